package anchors_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"weft.dev/weft/internal/config/kube/kubetest"
	"weft.dev/weft/internal/control/anchors"
	"weft.dev/weft/internal/control/inject"
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

const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

func TestPublisherAgainstAPIServer(t *testing.T) {
	cluster := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard
	defer cancel()
	client := kubernetes.NewForConfigOrDie(cluster.Config)
	// The control plane's namespace owns every ConfigMap, so deleting it
	// deletes them (the garbage collector's job, not running here).
	owner, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- anchors.New(client, []byte(pem), 0, nil).OwnedBy("weft").Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	cms := client.CoreV1().ConfigMaps("shop")
	// wait polls until the ConfigMap in shop holds the anchors.
	wait := func(t *testing.T) {
		t.Helper()
		for {
			cm, err := cms.Get(ctx, inject.AnchorsConfigMap, metav1.GetOptions{})
			if err == nil && cm.Data[inject.AnchorsKey] == pem && len(cm.OwnerReferences) == 1 &&
				cm.OwnerReferences[0].UID == owner.UID && cm.OwnerReferences[0].Kind == "Namespace" {
				return
			}
			select {
			case <-ctx.Done():
				t.Fatalf("ConfigMap %s in shop: got %v, %v; want the anchors", inject.AnchorsConfigMap, cm, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	tests := []struct {
		name   string
		change func(t *testing.T) error
	}{
		{"a new namespace gets the anchors", func(t *testing.T) error {
			_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{})
			return err
		}},
		{"an edited ConfigMap is restored", func(t *testing.T) error {
			cm, err := cms.Get(ctx, inject.AnchorsConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Data[inject.AnchorsKey] = "tampered"
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			return err
		}},
		{"a ConfigMap without its owner gets it back", func(t *testing.T) error {
			cm, err := cms.Get(ctx, inject.AnchorsConfigMap, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.OwnerReferences = nil
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			return err
		}},
		{"a deleted ConfigMap is recreated", func(t *testing.T) error {
			return cms.Delete(ctx, inject.AnchorsConfigMap, metav1.DeleteOptions{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.change(t); err != nil {
				t.Fatal(err)
			}
			wait(t)
		})
	}
}
