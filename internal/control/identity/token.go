package identity

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// ErrUnauthenticated is wrapped by an Authenticator's error when the token
// proves nothing (unknown, revoked, malformed). Other errors mean the check
// itself could not be made (e.g. the Kubernetes API is unreachable).
var ErrUnauthenticated = errors.New("token not accepted")

// Authenticator turns a proxy's proof of identity into the identity it
// proves. Local mode uses JoinTokens; on Kubernetes a TokenReview of a
// projected ServiceAccount token implements it.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Identity, error)
}

// joinTokenPrefix marks weft join tokens so a token pasted in the wrong
// place is recognisable.
const joinTokenPrefix = "weftjt1_"

// JoinTokens authenticates per-workload join tokens, the local-mode proof
// of identity. Each token proves exactly the identity it was issued for:
// a token for sa/web never yields sa/web-admin.
//
// Reuse: a join token is the workload's standing credential, like a
// projected ServiceAccount token on Kubernetes. `weft up` issues one per
// proxy and writes it to a file only that proxy reads; the proxy presents
// it on its first request and on every renewal. Anyone holding the token
// can get a certificate for that one identity, so the file must be private
// (0600). Revoke ends it.
//
// Only SHA-256 hashes of tokens are kept in memory.
type JoinTokens struct {
	// mu guards byHash.
	mu     sync.RWMutex
	byHash map[[sha256.Size]byte]Identity
}

var _ Authenticator = (*JoinTokens)(nil)

// NewJoinTokens returns an empty token set.
func NewJoinTokens() *JoinTokens {
	return &JoinTokens{byHash: map[[sha256.Size]byte]Identity{}}
}

// Issue creates a new random token (256 bits) that authenticates as id.
func (j *JoinTokens) Issue(id Identity) (string, error) {
	if err := id.Validate(); err != nil {
		return "", err
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("join token: %w", err)
	}
	tok := joinTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	j.mu.Lock()
	j.byHash[sha256.Sum256([]byte(tok))] = id
	j.mu.Unlock()
	return tok, nil
}

// Register accepts a token issued earlier (e.g. read back from the state
// directory after a restart) as proof of id.
func (j *JoinTokens) Register(token string, id Identity) error {
	if err := id.Validate(); err != nil {
		return err
	}
	if !strings.HasPrefix(token, joinTokenPrefix) || len(token) < len(joinTokenPrefix)+43 {
		return fmt.Errorf("join token for %s is malformed; issue a new one", id)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	h := sha256.Sum256([]byte(token))
	if prev, ok := j.byHash[h]; ok && prev != id {
		return fmt.Errorf("join token is already registered for %s, not %s", prev, id)
	}
	j.byHash[h] = id
	return nil
}

// Revoke makes token authenticate nothing from now on.
func (j *JoinTokens) Revoke(token string) {
	j.mu.Lock()
	delete(j.byHash, sha256.Sum256([]byte(token)))
	j.mu.Unlock()
}

// Authenticate returns the identity token was issued for.
func (j *JoinTokens) Authenticate(_ context.Context, token string) (Identity, error) {
	if token == "" {
		return Identity{}, fmt.Errorf("no join token given: %w", ErrUnauthenticated)
	}
	// The map is keyed by hash: looking a token up reveals, by timing, at
	// most something about its hash, not the token.
	h := sha256.Sum256([]byte(token))
	j.mu.RLock()
	id, ok := j.byHash[h]
	j.mu.RUnlock()
	if !ok {
		return Identity{}, fmt.Errorf("join token unknown or revoked: %w", ErrUnauthenticated)
	}
	return id, nil
}
