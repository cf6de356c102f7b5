package gateway

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Tokens for embedding: an application that has its own users signs a
// short-lived JWT for one of them, and the browser connects with
// ?token=<jwt>. The gateway accepts one algorithm only, the one its key is
// for (HS256 for GATEWAY_JWT_SECRET, ES256 or RS256 for
// GATEWAY_JWT_PUBLIC_KEY): a token that names another algorithm, "none"
// included, is refused before its signature is looked at, so a public key
// can never be used as an HMAC secret.

// minSecretLen is the shortest HS256 secret accepted: 256 bits, the size of
// the hash, as RFC 7518 asks.
const minSecretLen = 32

// maxTokenLen bounds a token read from a URL.
const maxTokenLen = 4096

// tokenVerifier checks embedding tokens. A nil verifier accepts none.
type tokenVerifier struct {
	method string // the one accepted "alg"
	key    any
	now    func() time.Time
}

// tokenClaims are the claims of an embedding token: sub (the user name),
// exp (required) and, optionally, the rooms it may join.
type tokenClaims struct {
	Rooms []string `json:"rooms,omitempty"`
	jwt.RegisteredClaims
}

// newTokenVerifier builds the verifier for the configured key: secret for
// HS256, or publicKey (PEM, or the name of a file holding it) for ES256
// (ECDSA P-256) or RS256. Neither: nil, no tokens. Both: an error, since
// which one a token must use would be ambiguous.
func newTokenVerifier(secret, publicKey string) (*tokenVerifier, error) {
	switch {
	case secret != "" && publicKey != "":
		return nil, errors.New("set GATEWAY_JWT_SECRET or GATEWAY_JWT_PUBLIC_KEY, not both")
	case secret != "":
		if len(secret) < minSecretLen {
			return nil, fmt.Errorf("GATEWAY_JWT_SECRET has %d bytes, want at least %d", len(secret), minSecretLen)
		}
		return &tokenVerifier{method: jwt.SigningMethodHS256.Alg(), key: []byte(secret), now: time.Now}, nil
	case publicKey != "":
		data := []byte(publicKey)
		if !strings.HasPrefix(strings.TrimSpace(publicKey), "-----BEGIN") {
			var err error
			if data, err = os.ReadFile(publicKey); err != nil {
				return nil, fmt.Errorf("GATEWAY_JWT_PUBLIC_KEY: %w", err)
			}
		}
		block, _ := pem.Decode(data)
		if block == nil {
			return nil, errors.New("GATEWAY_JWT_PUBLIC_KEY: no PEM block")
		}
		key, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("GATEWAY_JWT_PUBLIC_KEY: %w", err)
		}
		switch k := key.(type) {
		case *ecdsa.PublicKey:
			if k.Curve != elliptic.P256() {
				return nil, fmt.Errorf("GATEWAY_JWT_PUBLIC_KEY: ECDSA curve %s, want P-256 (ES256)", k.Curve.Params().Name)
			}
			return &tokenVerifier{method: jwt.SigningMethodES256.Alg(), key: k, now: time.Now}, nil
		case *rsa.PublicKey:
			if k.N.BitLen() < 2048 {
				return nil, fmt.Errorf("GATEWAY_JWT_PUBLIC_KEY: RSA key of %d bits, want at least 2048", k.N.BitLen())
			}
			return &tokenVerifier{method: jwt.SigningMethodRS256.Alg(), key: k, now: time.Now}, nil
		default:
			return nil, fmt.Errorf("GATEWAY_JWT_PUBLIC_KEY: a %T, want an ECDSA P-256 or RSA public key", key)
		}
	}
	return nil, nil
}

// verify checks raw for user in room: a good signature by the configured
// key with the configured algorithm, not expired, sub equal to user, and
// room among rooms when the token lists them.
func (v *tokenVerifier) verify(raw, room, user string) *refusal {
	if v == nil {
		return refuse(http.StatusUnauthorized, "this gateway accepts no tokens (no GATEWAY_JWT_SECRET or GATEWAY_JWT_PUBLIC_KEY)")
	}
	if len(raw) > maxTokenLen {
		return refuse(http.StatusUnauthorized, "token: malformed (too long)")
	}
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(raw, &claims, func(t *jwt.Token) (any, error) {
		return v.key, nil
	}, jwt.WithValidMethods([]string{v.method}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(v.now))
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return refuse(http.StatusUnauthorized, "token: expired")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return refuse(http.StatusUnauthorized, "token: no exp (tokens must expire)")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return refuse(http.StatusUnauthorized, "token: not valid yet")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return refuse(http.StatusUnauthorized, fmt.Sprintf("token: bad signature (this gateway accepts %s only)", v.method))
	case errors.Is(err, jwt.ErrTokenMalformed):
		return refuse(http.StatusUnauthorized, "token: malformed")
	default:
		return refuse(http.StatusUnauthorized, "token: invalid")
	}
	if claims.Subject != user {
		return refuse(http.StatusForbidden, fmt.Sprintf("token: issued for %.64q, not for %s", claims.Subject, user))
	}
	if len(claims.Rooms) > 0 && !slices.Contains(claims.Rooms, room) {
		return refuse(http.StatusForbidden, fmt.Sprintf("token: not valid for room %s", room))
	}
	return nil
}
