// Package pool pools connections to data sources: a generic Pool for one
// source, a Manager that owns one lazily created Pool per source ID, and a
// PooledRegistry that handlers call by ID.
//
// The pool lock is never held across I/O or user code: dialling, pinging,
// resetting and closing connections all happen outside it. A released
// connection is handed straight to the longest-waiting caller, and idle
// connections are reused newest first.
package pool
