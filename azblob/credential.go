package azblob

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
)

// tokenMemo is the connection's view of Options.Credential: it marks the
// credential's failures as ErrAuth, and remembers the last token it handed
// out, so that wrap can hide it should any error text ever quote it.
type tokenMemo struct {
	cred azcore.TokenCredential

	mu   sync.Mutex
	last string
}

func (m *tokenMemo) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	tok, err := m.cred.GetToken(ctx, opts)
	if err != nil {
		return tok, &credentialError{err: err}
	}
	m.mu.Lock()
	m.last = tok.Token
	m.mu.Unlock()
	return tok, nil
}

// hide replaces the last token in s.
func (m *tokenMemo) hide(s string) string {
	if m == nil {
		return s
	}
	m.mu.Lock()
	last := m.last
	m.mu.Unlock()
	if last == "" {
		return s
	}
	return strings.ReplaceAll(s, last, "REDACTED")
}

// credentialError is the failure of Options.Credential. It matches
// ErrAuth unless the request's context ended first.
type credentialError struct{ err error }

func (e *credentialError) Error() string { return "credential: " + e.err.Error() }

func (e *credentialError) Unwrap() []error {
	if errors.Is(e.err, context.Canceled) || errors.Is(e.err, context.DeadlineExceeded) {
		return []error{e.err}
	}
	return []error{e.err, ErrAuth}
}
