// Package leader elects one leader among the controller's replicas with a
// coordination.k8s.io Lease (client-go's leaderelection) and runs the work
// only the leader may do — writing cluster state — while it leads. Every
// replica keeps serving what only reads (proxies, the webhook, the CLI's
// API); leadership only decides who writes.
//
// The controller in Kubernetes mode imports leader. Run blocks until its
// context ends; an Elector is safe to Run once.
package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the Lease the controller's replicas compete for, in the
// control plane's namespace.
const LeaseName = "weft-controller"

// Defaults of Config's durations, those of Kubernetes' own controllers.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Config configures an Elector.
type Config struct {
	// Client reaches the API server; required.
	Client kubernetes.Interface
	// Namespace of the Lease; required.
	Namespace string
	// Name of the Lease; "" means LeaseName.
	Name string
	// Identity of this replica, unique among the replicas (the pod name
	// and a random suffix); required.
	Identity string
	// LeaseDuration is how long a lease not renewed stays held: how long
	// the others wait after a leader dies without releasing it.
	// RenewDeadline is how long the leader keeps trying to renew before it
	// gives up leading; RetryPeriod is how often everyone tries. Zero
	// means the defaults above; LeaseDuration > RenewDeadline >
	// RetryPeriod.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Lead is the leader's work: it starts when this replica acquires the
	// lease and its context ends when the lease is lost (or Run's context
	// ends). A returned error is logged; Lead is not started again until
	// the lease is acquired anew.
	Lead func(ctx context.Context) error
	// Logger; nil discards.
	Logger *slog.Logger
}

// Elector campaigns for the lease again and again until its context ends.
type Elector struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	leading bool
}

// New checks cfg and returns an Elector. It does no I/O.
func New(cfg Config) (*Elector, error) {
	if cfg.Client == nil || cfg.Lead == nil {
		return nil, errors.New("leader: a client and the leader's work are required")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("leader: the lease's namespace is required")
	}
	if cfg.Identity == "" {
		return nil, errors.New("leader: the replica's identity is required")
	}
	if cfg.Name == "" {
		cfg.Name = LeaseName
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if !(cfg.LeaseDuration > cfg.RenewDeadline && cfg.RenewDeadline > cfg.RetryPeriod && cfg.RetryPeriod > 0) {
		return nil, fmt.Errorf("leader: lease duration %v, renew deadline %v, retry period %v: want lease duration > renew deadline > retry period > 0",
			cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, log: log.With("component", "leader", "lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)}, nil
}

// Leading reports whether this replica holds the lease now.
func (e *Elector) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

func (e *Elector) setLeading(v bool) {
	e.mu.Lock()
	e.leading = v
	e.mu.Unlock()
}

// Run campaigns for the lease; while it holds it, it runs Lead. A replica
// that loses the lease stops Lead, waits for it to return and campaigns
// again. When ctx ends Run stops Lead, releases the lease (so another
// replica takes over at once, not after the lease duration) and returns
// nil.
func (e *Elector) Run(ctx context.Context) error {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.cfg.Namespace, Name: e.cfg.Name},
		Client:     e.cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.cfg.Identity},
	}
	for ctx.Err() == nil {
		// work tracks the leader's work of this round; once the round
		// is over (stopped) no late callback starts it.
		var (
			work    sync.WaitGroup
			roundMu sync.Mutex
			stopped bool
		)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   e.cfg.LeaseDuration,
			RenewDeadline:   e.cfg.RenewDeadline,
			RetryPeriod:     e.cfg.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            e.cfg.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					roundMu.Lock()
					if stopped {
						roundMu.Unlock()
						return
					}
					work.Add(1)
					roundMu.Unlock()
					defer work.Done()
					e.setLeading(true)
					e.log.Info("leading: this replica writes cluster state")
					if err := e.cfg.Lead(ctx); err != nil && ctx.Err() == nil {
						e.log.Error("the leader's work failed", "err", err)
					}
				},
				OnStoppedLeading: func() { e.setLeading(false) },
				OnNewLeader: func(id string) {
					if id != e.cfg.Identity {
						e.log.Info("another replica leads", "leader", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
		roundMu.Lock()
		stopped = true
		roundMu.Unlock()
		work.Wait()
		e.setLeading(false)
		if ctx.Err() == nil {
			e.log.Warn("lost the lease; campaigning again")
		}
	}
	return nil
}
