package local

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"weft.dev/weft/internal/config/memory"
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
}

func newControlPlane(cfg controlConfig) (controlPlane, error) {
	return nil, errors.New("the embedded controller is not available in this build")
}
