package identity_test

import (
	"encoding/base64"
	"math/big"
	"strings"
)

func b64lines(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\n")
		s = s[64:]
	}
	b.WriteString(s + "\n")
	return b.String()
}

func big1() *big.Int { return big.NewInt(1) }
