package local

import (
	"context"
	"log/slog"
	"time"

	"weft.dev/weft/internal/config/memory"
	"weft.dev/weft/internal/control/controller"
	"weft.dev/weft/internal/control/identity"
)

// controlPlane is the embedded controller as `weft up` uses it.
type controlPlane interface {
	Run(ctx context.Context) error
	Ready() <-chan struct{}
	GRPCAddr() string
	HTTPAddr() string
}

type controlConfig struct {
	GRPCAddr, HTTPAddr, Token string
	Store                     *memory.Store
	Logger                    *slog.Logger
	ScrapeInterval            time.Duration
	Issuer                    *identity.Issuer
	Tokens                    *identity.JoinTokens
}

func newControlPlane(cfg controlConfig) (controlPlane, error) {
	return controller.New(controller.Config{
		GRPCAddr: cfg.GRPCAddr, HTTPAddr: cfg.HTTPAddr, Token: cfg.Token,
		Store: cfg.Store, Logger: cfg.Logger, ScrapeInterval: cfg.ScrapeInterval,
		Issuer: cfg.Issuer, Tokens: cfg.Tokens,
	})
}
