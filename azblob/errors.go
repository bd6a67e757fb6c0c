package azblob

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"

	"github.com/deepanalyze/pool"
)

var (
	// ErrBlobNotFound is returned when the blob does not exist (404).
	ErrBlobNotFound = errors.New("azblob: blob not found")
	// ErrContainerNotFound is returned when the container does not exist
	// (404 ContainerNotFound), also by the dial of a new connection.
	ErrContainerNotFound = errors.New("azblob: container not found")
	// ErrAuth is returned when the service refused the credential or its
	// permissions (401 or 403), also by the dial of a new connection.
	ErrAuth = errors.New("azblob: authentication failed")
	// ErrThrottled is returned when the service still answered 429 or 503
	// after the SDK's retries, which honour its Retry-After. When the dial
	// of a new connection is throttled, its error also matches
	// pool.ErrCapacity, so that the pool waits for the account instead of
	// failing its callers.
	ErrThrottled = errors.New("azblob: throttled by the service")
)

// Error is the error of a failed operation. Its text names the operation,
// the container and the blob, and never holds a key or a SAS token. It
// matches, with errors.Is, one of the sentinels above when the failure is
// one of theirs, and, with errors.As, the SDK's *azcore.ResponseError when
// the service answered, or a *url.Error (its URL scrubbed) when the
// request did not reach it.
type Error struct {
	Op        string // "read", "list", "upload", "properties", "ping", "connect"
	Container string
	Blob      string // empty for operations on the container
	// StatusCode is the HTTP status of the service's answer, 0 if none.
	StatusCode int
	// Code is the service's error code, such as "BlobNotFound".
	Code string

	msg     string
	wrapped []error
}

func (e *Error) Error() string   { return e.msg }
func (e *Error) Unwrap() []error { return e.wrapped }

// wrap turns an SDK error into an *Error; nil stays nil.
func (c *Conn) wrap(op, blob string, err error) error {
	if err == nil {
		return nil
	}
	e := &Error{Op: op, Container: c.name, Blob: blob}
	where := c.name
	if blob != "" {
		where += "/" + blob
	}
	var what string
	var re *azcore.ResponseError
	var ue *url.Error
	var ce *credentialError
	switch {
	case errors.As(err, &ce):
		e.wrapped = append(e.wrapped, ce)
		what = c.tokens.hide(c.scrub.Replace(ce.Error()))
	case errors.As(err, &re):
		e.wrapped = append(e.wrapped, re)
		e.Code = re.ErrorCode
		if re.RawResponse != nil {
			e.StatusCode = re.RawResponse.StatusCode
		} else {
			e.StatusCode = re.StatusCode
		}
		sentinel := classify(e.StatusCode, e.Code, blob != "")
		if sentinel != nil {
			e.wrapped = append(e.wrapped, sentinel)
			if sentinel == ErrThrottled && op == "connect" {
				// The account refused a new connection for load: the
				// pool waits and probes instead of failing its callers.
				e.wrapped = append(e.wrapped, pool.ErrCapacity)
			}
			what = strings.TrimPrefix(sentinel.Error(), "azblob: ")
		} else {
			what = "request failed"
		}
		what += fmt.Sprintf(" (%d %s)", e.StatusCode, e.Code)
	case errors.As(err, &ue):
		cp := *ue
		cp.URL = c.scrub.Replace(scrubSig(ue.URL))
		if u, perr := url.Parse(cp.URL); perr == nil { // the path and host say enough
			u.RawQuery = ""
			cp.URL = u.String()
		}
		e.wrapped = append(e.wrapped, &cp)
		what = c.scrub.Replace(scrubSig(cp.Error()))
	default:
		what = c.scrub.Replace(scrubSig(err.Error()))
		for _, ce := range []error{context.Canceled, context.DeadlineExceeded} {
			if errors.Is(err, ce) {
				e.wrapped = append(e.wrapped, ce)
			}
		}
	}
	e.msg = c.tokens.hide(fmt.Sprintf("azblob: %s %s: %s", op, where, what))
	return e
}

// classify maps a service answer to a sentinel, or nil.
func classify(status int, code string, onBlob bool) error {
	switch {
	case code == "BlobNotFound":
		return ErrBlobNotFound
	case code == "ContainerNotFound":
		return ErrContainerNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return ErrAuth
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		return ErrThrottled
	case status == http.StatusNotFound && onBlob:
		return ErrBlobNotFound // a HEAD answer carries no body to say more
	case status == http.StatusNotFound:
		return ErrContainerNotFound
	}
	return nil
}

var sigParam = regexp.MustCompile(`(?i)(sig=)[^&\s"']+`)

// scrubSig hides the signature of any SAS token in s.
func scrubSig(s string) string { return sigParam.ReplaceAllString(s, "${1}REDACTED") }

// newScrubber replaces every secret with REDACTED, longest first so that a
// token is hidden whole before its signature is.
func newScrubber(secrets []string) *strings.Replacer {
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	var args []string
	for _, s := range secrets {
		if s != "" {
			args = append(args, s, "REDACTED")
		}
	}
	return strings.NewReplacer(args...)
}
