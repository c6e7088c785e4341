package tokenreview_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"weft.dev/weft/internal/config/kube/kubetest"
	"weft.dev/weft/internal/control/identity"
	"weft.dev/weft/internal/control/identity/tokenreview"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog's flush daemon starts with the package and never stops.
		goleak.IgnoreAnyFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		// client-go caches its transports (and their idle connections) for
		// the life of the process.
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
		goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*http2ClientConn).readLoop"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	)
}

func TestTokenReviewAgainstAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard
	defer cancel()
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().ServiceAccounts("shop").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(audience string) string {
		t.Helper()
		tr, err := client.CoreV1().ServiceAccounts("shop").CreateToken(ctx, "web", &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	weftToken := token(tokenreview.Audience)
	apiToken := token("https://kubernetes.default.svc.cluster.local")

	auth := tokenreview.New(client, "", "example.org")
	tests := []struct {
		name    string
		token   string
		want    string
		refused bool
	}{
		{name: "projected token for weft's audience", token: weftToken, want: "spiffe://example.org/ns/shop/sa/web"},
		{name: "token for the API server's audience", token: apiToken, refused: true},
		{name: "garbage", token: "not-a-token", refused: true},
		{name: "empty", token: "", refused: true},
		{name: "the admin's static token is not a service account", token: cluster.Config.BearerToken, refused: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := auth.Authenticate(ctx, tc.token)
			if tc.refused {
				if !errors.Is(err, identity.ErrUnauthenticated) {
					t.Fatalf("got identity %v, error %v; want an error wrapping ErrUnauthenticated", id, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := id.String(); got != tc.want {
				t.Errorf("identity: got %s, want %s", got, tc.want)
			}
		})
	}

	t.Run("an unreachable API server is not a refusal", func(t *testing.T) {
		cfg := *cluster.Config
		cfg.Host = "https://127.0.0.1:1"
		down := tokenreview.New(kubernetes.NewForConfigOrDie(&cfg), "", "example.org")
		_, err := down.Authenticate(ctx, weftToken)
		if err == nil || errors.Is(err, identity.ErrUnauthenticated) {
			t.Errorf("got %v, want an error that is not ErrUnauthenticated", err)
		}
	})
}
