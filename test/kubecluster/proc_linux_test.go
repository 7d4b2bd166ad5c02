package kubecluster

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes TestChildrenDieWithProcess the process that starts a cluster and is killed.
const helperEnv = "LBPROBE_KUBECLUSTER_HELPER"

// TestChildrenDieWithProcess starts a cluster in a child test process, SIGKILLs that process
// (as go test's -timeout does) and expects etcd and kube-apiserver to die with it and the next
// Start to remove its folder.
func TestChildrenDieWithProcess(t *testing.T) {
	if os.Getenv(helperEnv) == "1" {
		startAndWait(t)
		return
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("no setpriv (util-linux): children outlive a killed process")
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestChildrenDieWithProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // the helper exits when it closes, should this test die first
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var dir string
	timeout := time.After(3 * time.Minute)
	for dir == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("the helper exited before it reported a cluster: %v", cmd.Wait())
			}
			if v, found := strings.CutPrefix(line, "cluster dir="); found {
				dir = v
			}
		case <-timeout:
			t.Fatal("the helper reported no cluster within 3 minutes")
		}
	}
	go func() { // drain the rest
		for range lines {
		}
	}()

	children := childProcesses(t, cmd.Process.Pid)
	for _, name := range []string{"etcd", "kube-apiserver"} {
		if !hasValue(children, name) {
			t.Fatalf("no %s among the helper's children %v", name, children)
		}
	}
	t.Cleanup(func() { // whatever the outcome, leave nothing running
		for pid, name := range children {
			if processAlive(pid, name) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	eventually(t, 20*time.Second, func() error {
		for pid, name := range children {
			if processAlive(pid, name) {
				return fmt.Errorf("%s (pid %d) still runs after the process that started it was killed", name, pid)
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, "owner.pid")); err != nil {
		t.Fatalf("the killed helper's folder: %v", err)
	}
	removeStaleDirs(t.Logf)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left behind by a killed process: stat says %v, want it removed", dir, err)
	}
}

// startAndWait is the helper: it starts a cluster, reports its folder and waits to be killed.
func startAndWait(t *testing.T) {
	c, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("cluster dir=%s\n", filepath.Dir(c.KubeconfigPath()))
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed, or until the parent test is gone
	c.Stop()
}

// childProcesses returns the command names of the children of pid, by pid.
func childProcesses(t testing.TB, pid int) map[int]string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	children := map[int]string{}
	for _, stat := range stats {
		comm, ppid, _, ok := readStat(stat)
		if ok && ppid == pid {
			child, _ := strconv.Atoi(filepath.Base(filepath.Dir(stat)))
			children[child] = comm
		}
	}
	return children
}

// processAlive reports whether pid is a live (not zombie) process named name.
func processAlive(pid int, name string) bool {
	comm, _, state, ok := readStat(fmt.Sprintf("/proc/%d/stat", pid))
	return ok && comm == name && state != "Z" && state != "X"
}

// readStat returns the command name, parent pid and state from a /proc/PID/stat file.
func readStat(path string) (comm string, ppid int, state string, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", 0, "", false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(data)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, "", false
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 2 {
		return "", 0, "", false
	}
	ppid, err = strconv.Atoi(fields[1])
	return s[open+1 : end], ppid, fields[0], err == nil
}

func hasValue(m map[int]string, v string) bool {
	for _, x := range m {
		if x == v {
			return true
		}
	}
	return false
}
