package local

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"weft.dev/weft/internal/control/identity"
)

// The mesh's identity lives in the state directory's identity/: the trust
// anchor (ca.crt, what proxies verify against), the issuer (issuer.crt and
// its key issuer.key, 0600) and one join token per proxy in tokens/ (0600),
// so a restarted `weft up` keeps the same roots and tokens.
const (
	identityDir    = "identity"
	anchorsFile    = "ca.crt"
	issuerCertFile = "issuer.crt"
	issuerKeyFile  = "issuer.key"
	tokensDir      = "tokens"
)

// IdentityFiles are PEM files of a trust anchor and issuer the user
// supplies instead of generated ones. All three or none.
type IdentityFiles struct {
	TrustAnchors, IssuerCert, IssuerKey string
}

// meshIdentity is the CA side of local mode: the issuer for the embedded
// controller, the path proxies read the anchors from, and join tokens.
type meshIdentity struct {
	issuer      *identity.Issuer
	anchorsPath string
	trustDomain string
	tokens      *identity.JoinTokens
	dir         string // of the token files
}

// loadIdentity loads the user's roots, or the state directory's, or
// generates them into the state directory.
func loadIdentity(stateDir string, files IdentityFiles, trustDomain string) (*meshIdentity, error) {
	dir := filepath.Join(stateDir, identityDir)
	if err := os.MkdirAll(filepath.Join(dir, tokensDir), 0o700); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	mi := &meshIdentity{trustDomain: trustDomain, tokens: identity.NewJoinTokens(), dir: filepath.Join(dir, tokensDir)}
	given := 0
	for _, f := range []string{files.TrustAnchors, files.IssuerCert, files.IssuerKey} {
		if f != "" {
			given++
		}
	}
	switch given {
	case 3:
		is, err := identity.LoadIssuerFiles(files.TrustAnchors, files.IssuerCert, files.IssuerKey)
		if err != nil {
			return nil, fmt.Errorf("--identity-* files: %w", err)
		}
		abs, err := filepath.Abs(files.TrustAnchors)
		if err != nil {
			return nil, err
		}
		mi.issuer, mi.anchorsPath = is, abs
		return mi, nil
	case 0:
	default:
		return nil, errors.New("give all of --identity-trust-anchors, --identity-issuer-cert and --identity-issuer-key, or none (weft up then generates them)")
	}
	anchors, cert, key := filepath.Join(dir, anchorsFile), filepath.Join(dir, issuerCertFile), filepath.Join(dir, issuerKeyFile)
	if _, err := os.Stat(key); errors.Is(err, fs.ErrNotExist) {
		a, c, k, err := identity.GenerateRoots(trustDomain, 0)
		if err != nil {
			return nil, err
		}
		// The key last: its presence says the set is complete.
		for _, f := range []struct {
			path string
			data []byte
			mode os.FileMode
		}{{anchors, a, 0o644}, {cert, c, 0o644}, {key, k, 0o600}} {
			if err := writeSecretFile(f.path, f.data, f.mode); err != nil {
				return nil, fmt.Errorf("identity: %w", err)
			}
		}
	}
	is, err := identity.LoadIssuerFiles(anchors, cert, key)
	if err != nil {
		return nil, fmt.Errorf("identity in %s: %w (remove the directory to generate new roots)", dir, err)
	}
	mi.issuer, mi.anchorsPath = is, anchors
	return mi, nil
}

// tokenFile returns the join token file of a proxy of the workload with
// service account sa: the token saved there by an earlier run, registered
// again, or a new one.
func (mi *meshIdentity) tokenFile(proxyID, ns, sa string) (string, error) {
	id := identity.Identity{TrustDomain: mi.trustDomain, Namespace: ns, ServiceAccount: sa}
	path := filepath.Join(mi.dir, proxyID+".token")
	if b, err := os.ReadFile(path); err == nil {
		if err := mi.tokens.Register(strings.TrimSpace(string(b)), id); err == nil {
			return path, nil
		}
		// Malformed, or saved for another identity: issue a new one.
	}
	tok, err := mi.tokens.Issue(id)
	if err != nil {
		return "", err
	}
	if err := writeSecretFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("join token of %s: %w", proxyID, err)
	}
	return path, nil
}

// proxyArgs are the identity flags of a proxy.
func (mi *meshIdentity) proxyArgs(proxyID, ns, sa string) ([]string, error) {
	tf, err := mi.tokenFile(proxyID, ns, sa)
	if err != nil {
		return nil, err
	}
	return []string{"--trust-anchors", mi.anchorsPath, "--token-file", tf, "--trust-domain", mi.trustDomain}, nil
}

// writeSecretFile writes data to path through a temporary file, so a
// reader never sees half a file.
func writeSecretFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// withIdentity appends the identity flags of a proxy to args when the
// plan has an identity.
func withIdentity(args []string, env planEnv, proxyID, ns, sa string) ([]string, error) {
	if env.Identity == nil {
		return args, nil
	}
	extra, err := env.Identity.proxyArgs(proxyID, ns, sa)
	if err != nil {
		return nil, err
	}
	return append(args, extra...), nil
}
