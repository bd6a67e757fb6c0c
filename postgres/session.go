package postgres

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
)

// session follows what a borrower does to its connection's session, so
// that ResetSession resets only when something may have changed. It is the
// connection's pgx tracer, and passes every call on to the tracer the
// ConnConfig had, if any. It is conservative: a statement it cannot show
// to be harmless counts as dirty.
//
// What it cannot see: statements sent through the PgConn below the
// pgx.Conn (they bypass pgx's tracers), and session state changed inside
// a function that a plain SELECT calls (a PL/pgSQL function that calls
// set_config, takes an advisory lock or creates a temporary table). Use
// ResetAlways where handlers do either.
type session struct {
	next pgx.QueryTracer // the ConnConfig's own tracer, or nil

	// dirty: a statement may have changed session state (settings, role,
	// temporary tables, cursors, locks, LISTEN, sequences' currval).
	dirty bool
	// prepared: a statement may have made a named prepared statement, or
	// changed search_path, so pgx's statement cache must go too.
	prepared bool

	// kinds remembers the classification of the statements this
	// connection has seen (up to maxKinds), so that a handler's repeated
	// query is classified once. Only the connection's holder touches it.
	kinds map[string]stmtKind
}

// maxKinds bounds a connection's classification cache.
const maxKinds = 256

func (s *session) clean() bool { return !s.dirty && !s.prepared }

func (s *session) forget() { s.dirty, s.prepared = false, false }

// note classifies one statement a borrower sent.
func (s *session) note(sql string) {
	if s.prepared {
		return // nothing more to learn
	}
	kind, ok := s.kinds[sql]
	if !ok {
		kind = classify(sql)
		if s.kinds == nil {
			s.kinds = make(map[string]stmtKind)
		}
		if len(s.kinds) < maxKinds {
			s.kinds[sql] = kind
		}
	}
	switch kind {
	case stmtClean:
	case stmtDirty:
		s.dirty = true
	case stmtPrepared:
		s.dirty, s.prepared = true, true
	}
}

type stmtKind int

const (
	stmtClean    stmtKind = iota // leaves no session state
	stmtDirty                    // may leave session state
	stmtPrepared                 // may leave a prepared statement, or change search_path
)

// classify says what one SQL string may leave behind in the session. Only
// single statements that read or write table rows, and transaction
// control (an open or failed transaction is seen through the connection's
// status instead), count as clean, and only when they mention none of the
// functions and words that reach session state.
func classify(sql string) stmtKind {
	body := skipSpaceAndComments(sql)
	word := firstWord(body)
	if containsFold(sql, "search_path") || hasWord(word, "prepare", "deallocate", "execute") {
		return stmtPrepared
	}
	switch {
	case hasWord(word, "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release"):
		if multiStatement(body) {
			return stmtDirty
		}
		return stmtClean
	case hasWord(word, "select", "insert", "update", "delete", "with", "values", "table", "merge"):
		if multiStatement(body) {
			return stmtDirty
		}
		for _, risky := range sessionFunctions {
			if containsFold(body, risky) {
				return stmtDirty
			}
		}
		if containsFold(body, "into") && containsFold(body, "temp") { // SELECT ... INTO TEMP
			return stmtDirty
		}
		return stmtClean
	}
	return stmtDirty // SET, RESET, CREATE, LISTEN, DECLARE, DO, CALL, COPY, ...
}

// sessionFunctions are the names that a row-level statement can use to
// reach session state.
var sessionFunctions = []string{
	"set_config",        // settings
	"advisory",          // pg_advisory_lock and friends
	"nextval", "setval", // currval and lastval (a serial column's default is not seen)
	"dblink", // a second session held by this one
}

func skipSpaceAndComments(s string) string {
	for {
		s = strings.TrimLeft(s, " \t\r\n\f(")
		switch {
		case strings.HasPrefix(s, "--"):
			i := strings.IndexByte(s, '\n')
			if i < 0 {
				return ""
			}
			s = s[i+1:]
		case strings.HasPrefix(s, "/*"):
			i := strings.Index(s, "*/")
			if i < 0 {
				return ""
			}
			s = s[i+2:]
		default:
			return s
		}
	}
}

func firstWord(s string) string {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_') {
			return s[:i]
		}
	}
	return s
}

func hasWord(word string, candidates ...string) bool {
	for _, c := range candidates {
		if strings.EqualFold(word, c) {
			return true
		}
	}
	return false
}

// multiStatement reports whether s holds a ';' before its end (a ';'
// inside a string literal counts too, which only errs towards dirty).
func multiStatement(s string) bool {
	s = strings.TrimRight(s, " \t\r\n;")
	return strings.IndexByte(s, ';') >= 0
}

// containsFold reports whether s contains sub, ASCII case-insensitively,
// without allocating. sub is lower case.
func containsFold(s, sub string) bool {
	n := len(sub)
	for i := 0; i+n <= len(s); i++ {
		j := 0
		for ; j < n; j++ {
			c := s[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}

// TraceQueryStart implements pgx.QueryTracer.
func (s *session) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	s.note(data.SQL)
	if s.next != nil {
		return s.next.TraceQueryStart(ctx, conn, data)
	}
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (s *session) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if s.next != nil {
		s.next.TraceQueryEnd(ctx, conn, data)
	}
}

// TraceBatchStart implements pgx.BatchTracer.
func (s *session) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if bt, ok := s.next.(pgx.BatchTracer); ok {
		return bt.TraceBatchStart(ctx, conn, data)
	}
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (s *session) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	s.note(data.SQL)
	if bt, ok := s.next.(pgx.BatchTracer); ok {
		bt.TraceBatchQuery(ctx, conn, data)
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (s *session) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	if bt, ok := s.next.(pgx.BatchTracer); ok {
		bt.TraceBatchEnd(ctx, conn, data)
	}
}

// TracePrepareStart implements pgx.PrepareTracer: a statement prepared by
// name (not pgx's own cache, not the unnamed statement) stays in the
// session.
func (s *session) TracePrepareStart(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	if data.Name != "" && !strings.HasPrefix(data.Name, "stmtcache_") {
		s.dirty, s.prepared = true, true
	}
	if pt, ok := s.next.(pgx.PrepareTracer); ok {
		return pt.TracePrepareStart(ctx, conn, data)
	}
	return ctx
}

// TracePrepareEnd implements pgx.PrepareTracer.
func (s *session) TracePrepareEnd(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareEndData) {
	if pt, ok := s.next.(pgx.PrepareTracer); ok {
		pt.TracePrepareEnd(ctx, conn, data)
	}
}

// TraceConnectStart implements pgx.ConnectTracer.
func (s *session) TraceConnectStart(ctx context.Context, data pgx.TraceConnectStartData) context.Context {
	if ct, ok := s.next.(pgx.ConnectTracer); ok {
		return ct.TraceConnectStart(ctx, data)
	}
	return ctx
}

// TraceConnectEnd implements pgx.ConnectTracer.
func (s *session) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	if ct, ok := s.next.(pgx.ConnectTracer); ok {
		ct.TraceConnectEnd(ctx, data)
	}
}

// TraceCopyFromStart implements pgx.CopyFromTracer; COPY FROM writes rows
// and leaves no session state.
func (s *session) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	if ct, ok := s.next.(pgx.CopyFromTracer); ok {
		return ct.TraceCopyFromStart(ctx, conn, data)
	}
	return ctx
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (s *session) TraceCopyFromEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromEndData) {
	if ct, ok := s.next.(pgx.CopyFromTracer); ok {
		ct.TraceCopyFromEnd(ctx, conn, data)
	}
}

// resetSQL clears, in one round trip, what DISCARD ALL clears except the
// prepared statements, so that pgx's statement cache stays valid: open
// cursors, the session's role and authorization, every setting, LISTEN,
// advisory locks, temporary tables, sequence state and cached plans. (DISCARD
// ALL may not run in the implicit transaction of a multi-statement query;
// its parts may.)
const resetSQL = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; " +
	"SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES; DISCARD PLANS"
