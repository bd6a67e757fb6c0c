//go:build race

package poolotel_test

const raceEnabled = true
