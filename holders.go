package pool

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// holdersShown is how many loans and acquire sites a Holders keeps.
const holdersShown = 5

// Holders says who holds a pool's connections: how many loans are in
// progress, the longest of them, and, with Config.LeakThreshold set,
// where the loans in progress were acquired. Pool.Holders returns it for
// a debug endpoint, and the error of an Acquire that timed out or was
// refused on a full pool carries it (see ExhaustedError).
type Holders struct {
	InUse   int // connections lent, being checked or being reset (as Stats.InUse)
	MaxSize int
	Loans   int // loans in progress: connections their callers hold
	// Longest holds the ages of the longest loans in progress, longest
	// first, at most five.
	Longest []time.Duration
	// Sites, with Config.LeakThreshold set, groups the loans in progress
	// by where they were acquired, the site with the most loans first, at
	// most five. Nil without LeakThreshold.
	Sites []HolderSite
}

// HolderSite is one place in the caller's code that holds loans.
type HolderSite struct {
	// Site is the first caller outside this module's packages that
	// acquired the loans: "function file:line".
	Site    string
	Loans   int
	Longest time.Duration // the age of the longest of them
}

// String renders h on one line, for an error or a log:
// "8 of 8 in use; longest loans 5.1s, 4s; acquired at main.handler
// /src/api.go:42 (6 loans, longest 5.1s)".
func (h Holders) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d in use", h.InUse, h.MaxSize)
	if len(h.Longest) > 0 {
		b.WriteString("; longest loans ")
		for i, d := range h.Longest {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(roundAge(d).String())
		}
	}
	for i, s := range h.Sites {
		if i == 0 {
			b.WriteString("; acquired at ")
		} else {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%d loans, longest %v)", s.Site, s.Loans, roundAge(s.Longest))
	}
	return b.String()
}

// roundAge rounds a loan's age for display: to the millisecond, or the
// microsecond below one.
func roundAge(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return d.Round(time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// ExhaustedError is wrapped in the error of an Acquire that timed out
// (ErrAcquireTimeout), was shed (ShedHopeless) or was refused
// (ErrTooManyWaiters) while connections were in use: it holds who held
// them at that moment. Find it with errors.As.
type ExhaustedError struct {
	Holders Holders
}

func (e *ExhaustedError) Error() string { return "pool: exhausted: " + e.Holders.String() }

// Holders returns who holds the pool's connections now. It reads each
// connection's loan without stopping the loans, under the pool's lock
// for as long as it takes to walk the open connections; acquire sites
// are resolved once each and remembered.
func (p *Pool[C]) Holders() Holders {
	p.mu.Lock()
	defer p.unlock()
	return p.holdersLocked()
}

// holdersLocked is Holders with p.mu held.
func (p *Pool[C]) holdersLocked() Holders {
	parked, _ := p.idle.census()
	n := p.n.withParked(parked)
	h := Holders{
		InUse:   n[stateChecking] + n[stateLent] + n[stateResetting],
		MaxSize: p.maxSize,
	}
	now := p.clock.now()
	type loan struct {
		age   time.Duration
		stack []uintptr
	}
	var loans []loan
	for _, e := range p.conns {
		started, ok := e.loanInProgress()
		if !ok {
			continue
		}
		l := loan{age: time.Duration(max(now-started, 0))}
		if t := e.leak.Load(); t != nil {
			l.stack = t.stack
		}
		loans = append(loans, l)
	}
	h.Loans = len(loans)
	slices.SortFunc(loans, func(a, b loan) int { return cmp.Compare(b.age, a.age) })
	for _, l := range loans[:min(len(loans), holdersShown)] {
		h.Longest = append(h.Longest, l.age)
	}
	if p.cfg.LeakThreshold == 0 {
		return h
	}
	var sites []HolderSite
	index := map[string]int{}
	for _, l := range loans { // longest first: a site's first loan is its longest
		site := p.sites.of(l.stack)
		i, ok := index[site]
		if !ok {
			i = len(sites)
			index[site] = i
			sites = append(sites, HolderSite{Site: site, Longest: l.age})
		}
		sites[i].Loans++
	}
	slices.SortStableFunc(sites, func(a, b HolderSite) int { return cmp.Compare(b.Loans, a.Loans) })
	h.Sites = sites[:min(len(sites), holdersShown)]
	return h
}

// err is h as the ExhaustedError that the error of a caller refused on
// the pool wraps, or nil when nothing is in use.
func (h Holders) err() error {
	if h.InUse == 0 {
		return nil
	}
	return &ExhaustedError{Holders: h}
}

// suffix is h for the end of such an error's message: ": " and the
// summary, or nothing when nothing is in use.
func (h Holders) suffix() string {
	if h.InUse == 0 {
		return ""
	}
	return ": " + h.String()
}

// siteCache remembers the acquire site of each distinct stack, so that
// Holders symbolizes a stack once. Guarded by the pool's mu.
type siteCache struct {
	sites map[string]string // by the stack's program counters, as bytes
	key   []byte
}

// maxSites bounds a siteCache: a program whose loans come from more
// distinct stacks than this (deep recursion, generated code) symbolizes
// some of them again.
const maxSites = 1024

// of returns the acquire site of stack: its first frame outside this
// module's packages.
func (c *siteCache) of(stack []uintptr) string {
	c.key = c.key[:0]
	for _, pc := range stack {
		c.key = binary.LittleEndian.AppendUint64(c.key, uint64(pc))
	}
	if site, ok := c.sites[string(c.key)]; ok { // the conversion does not allocate
		return site
	}
	if c.sites == nil || len(c.sites) >= maxSites {
		c.sites = map[string]string{}
	}
	site := acquireSite(stack)
	c.sites[string(c.key)] = site
	return site
}

// acquireSite is the first frame of stack outside this module's library
// packages, as "function file:line".
func acquireSite(stack []uintptr) string {
	frames := runtime.CallersFrames(stack)
	for {
		f, more := frames.Next()
		if f.Function != "" && !libraryFrame(f.Function) {
			return f.Function + " " + f.File + ":" + strconv.Itoa(f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}

// libraryFrame reports whether fn is a function of this module's library
// packages (pool and its connectors), whose frames an acquire site skips;
// their tests and the examples are callers.
func libraryFrame(fn string) bool {
	rest, ok := strings.CutPrefix(fn, "github.com/deepanalyze/pool")
	if !ok {
		return false
	}
	for _, pkg := range []string{".", "/postgres.", "/azblob.", "/otel.", "/prometheus."} {
		if strings.HasPrefix(rest, pkg) {
			return true
		}
	}
	return false
}
