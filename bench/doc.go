// Package bench compares pool with the Go pools a user would pick instead:
// jackc/puddle v2, database/sql (over an in-process fake driver, so only its
// pool is measured), vitess smartconnpool, silenceper/pool,
// jolestar/go-commons-pool v2 and a buffered channel as the floor.
//
// Every pool sits behind the same small adapter interface, so each pays the
// same call overhead. The benchmarks are in bench_test.go; run.sh runs them
// interleaved and writes RESULTS.md.
package bench
