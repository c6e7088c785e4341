package h2

import (
	"context"
	"net"
)

// connContext gives a connection's requests the values of the context its
// owner passed to ServeConn, keeping the server's cancellation.
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*trackedConn); ok && tc.vals != nil {
		return valuesCtx{Context: ctx, vals: tc.vals}
	}
	return ctx
}

// valuesCtx looks values up in vals first, then in its own chain.
type valuesCtx struct {
	context.Context
	vals context.Context
}

func (c valuesCtx) Value(key any) any {
	if v := c.vals.Value(key); v != nil {
		return v
	}
	return c.Context.Value(key)
}
