package postgres

// ResetRoundTrips is how many round trips Reset has made on c.
func (c *Conn) ResetRoundTrips() int { return c.resets }

// Classify exposes the statement classifier: "clean", "dirty" or
// "prepared".
func Classify(sql string) string {
	return [...]string{stmtClean: "clean", stmtDirty: "dirty", stmtPrepared: "prepared"}[classify(sql)]
}

// AtCapacity exposes the mapping of connect errors to pool.ErrCapacity.
func AtCapacity(err error) error { return atCapacity(err) }

// SetPeek turns IsValid's socket peek on or off, for the benchmark that
// measures what it costs; it returns the previous setting.
func SetPeek(on bool) bool { old := peekOn; peekOn = on; return old }

// WantsWritable exposes whether a DSN asks for a server that takes
// writes.
func WantsWritable(dsn string) bool {
	cfg, err := ParseDSN(dsn)
	if err != nil {
		panic(err)
	}
	return wantsWritable(cfg)
}

// NotReady exposes the mapping of connect errors to pool.ErrNotReady.
func NotReady(err error) error { return notReady(err) }
