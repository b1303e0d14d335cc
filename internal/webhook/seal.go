package webhook

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/ipa-dev/ipa/internal/ipa"
)

// Endpoint secrets at rest. The store keeps each endpoint's secret sealed
// with AES-256-GCM under a key that lives outside the database (the
// server's --secret-key-file), so a copy of the database alone (a backup, a
// dump, a stolen disk image of the database volume) reveals no secret.
//
// A sealed secret is SealedPrefix followed by the base64 (standard, padded)
// of nonce || ciphertext || tag. The prefix names the format's version, so
// it can change; a stored secret without it is a plaintext one written
// before sealing existed, which PrepareSecrets seals.

// SealedPrefix starts every sealed secret.
const SealedPrefix = "ipa-sealed:v1:"

// KeySize is the size of the sealing key: AES-256.
const KeySize = 32

// Additional data bound into every seal: a sealed value opens only for the
// use it was made for.
var (
	secretAD = []byte("ipa webhook endpoint secret")
	checkAD  = []byte("ipa secret key check")
)

// keyCheckPlain is sealed under checkAD into the settings row
// KeyCheckSetting: the first server's key stamps the database, and a server
// with another key finds out at start, before it signs anything.
const keyCheckPlain = "the key that seals this database's webhook secrets"

// KeyCheckSetting is the settings row that holds the key check.
const KeyCheckSetting = "webhook-secret-key-check"

// ErrWrongKey says the key does not open what the database holds.
var ErrWrongKey = errors.New("the secret key does not open the webhook secrets stored in this database: " +
	"every server on one database needs the same --secret-key-file, and a database copied from elsewhere needs the key it was sealed with")

// Sealer seals and opens endpoint secrets with one key. Safe for concurrent
// use.
type Sealer struct{ aead cipher.AEAD }

// NewSealer returns a Sealer for a KeySize-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("webhook: the secret key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal returns secret sealed for storage.
func (s *Sealer) Seal(secret string) (string, error) { return s.seal(secretAD, secret) }

// Open returns the secret a stored value holds. A value without
// SealedPrefix is a plaintext secret from before sealing and is returned as
// it is; a sealed one that does not open under this key is ErrWrongKey.
func (s *Sealer) Open(stored string) (string, error) {
	if !IsSealed(stored) {
		return stored, nil
	}
	return s.open(secretAD, stored)
}

// IsSealed reports whether a stored secret is sealed.
func IsSealed(stored string) bool { return strings.HasPrefix(stored, SealedPrefix) }

func (s *Sealer) seal(ad []byte, plain string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	// A random 96-bit nonce per seal: a server seals a handful of secrets,
	// far below the 2^32 messages per key where random nonces get risky.
	out := s.aead.Seal(nonce, nonce, []byte(plain), ad)
	return SealedPrefix + base64.StdEncoding.EncodeToString(out), nil
}

func (s *Sealer) open(ad []byte, stored string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(stored, SealedPrefix))
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return "", fmt.Errorf("webhook: a sealed secret is malformed")
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], ad)
	if err != nil {
		return "", ErrWrongKey
	}
	return string(plain), nil
}

// SecretStore is what PrepareSecrets needs of the store.
type SecretStore interface {
	// SettingOnce stores value under name unless the name has a value
	// already, and returns the stored one.
	SettingOnce(ctx context.Context, name, value string) (string, error)
	ListWebhookEndpoints(ctx context.Context) ([]ipa.WebhookEndpoint, error)
	// ReplaceWebhookSecret sets the endpoint's secret to new if it is still
	// old, and reports whether it did.
	ReplaceWebhookSecret(ctx context.Context, id, old, new string) (bool, error)
}

// PrepareSecrets runs at a server's start, before any delivery. It checks
// that s's key is the database's (stamping the database with it when no
// server has yet), opens every sealed secret to prove it, and seals the
// plaintext secrets an earlier version stored; it returns how many it
// sealed. Sealing is idempotent and safe while other servers do the same:
// each secret is replaced only while it is still the plaintext read, so
// whichever server seals it first wins and the others leave it be.
// Returns ErrWrongKey when the key is not the database's.
func PrepareSecrets(ctx context.Context, st SecretStore, s *Sealer) (sealed int, err error) {
	check, err := s.seal(checkAD, keyCheckPlain)
	if err != nil {
		return 0, err
	}
	stored, err := st.SettingOnce(ctx, KeyCheckSetting, check)
	if err != nil {
		return 0, err
	}
	if got, err := s.open(checkAD, stored); err != nil || got != keyCheckPlain {
		return 0, ErrWrongKey
	}
	endpoints, err := st.ListWebhookEndpoints(ctx)
	if err != nil {
		return 0, err
	}
	for _, e := range endpoints {
		if IsSealed(e.Secret) {
			if _, err := s.Open(e.Secret); err != nil {
				return sealed, fmt.Errorf("webhook endpoint %s: %w", e.ID, err)
			}
			continue
		}
		v, err := s.Seal(e.Secret)
		if err != nil {
			return sealed, err
		}
		done, err := st.ReplaceWebhookSecret(ctx, e.ID, e.Secret, v)
		if err != nil {
			return sealed, fmt.Errorf("seal the secret of webhook endpoint %s: %w", e.ID, err)
		}
		if done {
			sealed++
		}
	}
	return sealed, nil
}
