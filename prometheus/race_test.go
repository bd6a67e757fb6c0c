//go:build race

package poolprom_test

const raceEnabled = true
