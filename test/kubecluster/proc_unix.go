//go:build unix && !linux

package kubecluster

// launcher returns bin: only Linux can have the kernel kill a child when the process that
// started it dies.
func launcher(dir, name, bin string, logf func(string, ...any)) (string, error) { return bin, nil }

func onSpawner(f func()) { f() }
