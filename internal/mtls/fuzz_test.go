package mtls

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"
)

// FuzzLeafID feeds certificates with arbitrary subject alternative name
// extensions to the SAN parser. Whatever it accepts must be a certificate
// whose only SAN is one URI, equal to the returned ID, as x509 reads it.
func FuzzLeafID(f *testing.F) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	seed := func(tmpl *x509.Certificate) {
		tmpl.SerialNumber = big.NewInt(1)
		tmpl.NotBefore, tmpl.NotAfter = time.Unix(0, 0), time.Unix(1<<31, 0)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			f.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			f.Fatal(err)
		}
		for _, e := range c.Extensions {
			if e.Id.Equal(oidSAN) {
				f.Add(e.Value)
			}
		}
	}
	u, _ := url.Parse("spiffe://cluster.local/ns/default/sa/web")
	seed(&x509.Certificate{URIs: []*url.URL{u}})
	seed(&x509.Certificate{URIs: []*url.URL{u, u}})
	seed(&x509.Certificate{URIs: []*url.URL{u}, DNSNames: []string{"a.example"}, IPAddresses: []net.IP{net.IPv4(1, 2, 3, 4)}})
	seed(&x509.Certificate{EmailAddresses: []string{u.String()}})

	f.Fuzz(func(t *testing.T, san []byte) {
		tmpl := &x509.Certificate{
			SerialNumber:    big.NewInt(1),
			NotBefore:       time.Unix(0, 0),
			NotAfter:        time.Unix(1<<31, 0),
			ExtraExtensions: []pkix.Extension{{Id: oidSAN, Value: san}},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			return
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return // x509 refuses it; so would the handshake
		}
		for _, hostSANs := range []bool{false, true} {
			id, err := leafID(c, hostSANs)
			if err != nil {
				continue
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != id {
				t.Fatalf("accepted %q but x509 reads URIs %v", id, c.URIs)
			}
			if !hostSANs && len(c.DNSNames)+len(c.EmailAddresses)+len(c.IPAddresses) != 0 {
				t.Fatalf("accepted %q beside other SANs: %v %v %v", id, c.DNSNames, c.EmailAddresses, c.IPAddresses)
			}
			if len(c.EmailAddresses) != 0 {
				t.Fatalf("accepted %q beside e-mail SANs %v", id, c.EmailAddresses)
			}
		}
	})
}
