package deploy_test

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

const versionPkg = "github.com/prometheus/common/version"

var binOnce struct {
	once sync.Once
	path string
	err  error // $LBPROBE_BINARY is set but unusable
}

// lbprobeBinary returns $LBPROBE_BINARY (make test builds it with make build), else a binary
// built like the Makefile's (CGO_ENABLED=0, -trimpath, the same ldflags), else "" when go build
// fails: callers skip what needs it.
func lbprobeBinary(t *testing.T) string {
	t.Helper()
	binOnce.once.Do(func() {
		if p := os.Getenv("LBPROBE_BINARY"); p != "" {
			fi, err := os.Stat(p)
			switch {
			case err != nil:
				binOnce.err = fmt.Errorf("$LBPROBE_BINARY: %w", err)
			case fi.IsDir() || fi.Mode()&0o111 == 0:
				binOnce.err = fmt.Errorf("$LBPROBE_BINARY %s is not an executable file", p)
			default:
				binOnce.path = p
				verboseLogf("deploy_test: lbprobe from $LBPROBE_BINARY: %s", p)
			}
			return
		}
		begin := time.Now()
		out := filepath.Join(tmpRoot, "lbprobe")
		ldflags := "-s -w -X " + versionPkg + ".Version=deploy-test -X " + versionPkg + ".Revision=unknown -X " +
			versionPkg + ".Branch=unknown -X " + versionPkg + ".BuildUser=deploy_test"
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		if _, err := runToolIn(ctx, nil, []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, "../cmd/lbprobe"); err != nil {
			verboseLogf("deploy_test: $LBPROBE_BINARY is unset and go build failed: %v", err)
			return
		}
		binOnce.path = out
		verboseLogf("deploy_test: $LBPROBE_BINARY is unset: built %s like make build in %s", out, time.Since(begin).Round(time.Millisecond))
	})
	if binOnce.err != nil {
		t.Fatal(binOnce.err)
	}
	return binOnce.path
}

// TestBinary checks the lbprobe binary that make test builds ($LBPROBE_BINARY; else one built
// the same way): statically linked (no PT_INTERP program header, no DT_NEEDED libraries), and
// --version prints "lbprobe, version V (branch: B, revision: R)" with V non-empty.
func TestBinary(t *testing.T) {
	t.Parallel()
	bin := lbprobeBinary(t)
	if bin == "" {
		t.Skip("no lbprobe binary: $LBPROBE_BINARY is unset and go build ../cmd/lbprobe failed")
	}
	t.Run("static", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a %s program header: it is dynamically linked (build with CGO_ENABLED=0)", bin, p.Type)
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil {
			t.Fatalf("%s: %v", bin, err)
		}
		if len(libs) > 0 {
			t.Errorf("%s needs shared libraries (DT_NEEDED): %v", bin, libs)
		}
	})
	t.Run("version", func(t *testing.T) {
		out, err := exec.CommandContext(t.Context(), bin, "--version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", bin, err, out)
		}
		m := regexp.MustCompile(`(?m)^lbprobe, version (\S*) \(branch: (\S*), revision: (\S*)\)$`).FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("%s --version printed no \"lbprobe, version V (branch: B, revision: R)\" line:\n%s", bin, out)
		}
		if m[1] == "" {
			t.Errorf("%s --version: empty version (ldflags -X %s.Version missing):\n%s", bin, versionPkg, out)
		}
		if m[2] == "" || m[3] == "" {
			t.Errorf("%s --version: empty branch or revision (ldflags -X %s.Branch/Revision missing):\n%s", bin, versionPkg, out)
		}
		t.Logf("%s --version:\n%s", bin, strings.TrimSpace(string(out)))
	})
}

// goBuild is what a go build command line says about the build.
type goBuild struct {
	cgoDisabled bool
	trimpath    bool
	xVars       []string // sorted -X variable names (package.Var)
	otherLD     []string // sorted ldflags other than -X
	output      string   // -o
	pkg         string   // the package built
}

var (
	ldflagsRe = regexp.MustCompile(`-ldflags[= ]+(?:"([^"]*)"|'([^']*)'|(\S+))`)
	xFlagRe   = regexp.MustCompile(`-X[= ]+([^=\s]+)=\S*`)
	outputRe  = regexp.MustCompile(`\s-o[= ]+(\S+)`)
	cgoRe     = regexp.MustCompile(`(^|\s)CGO_ENABLED=0(\s|$)`)
)

func parseGoBuild(line string, env []string) (goBuild, error) {
	var b goBuild
	before, after, ok := strings.Cut(line, "go build")
	if !ok {
		return b, fmt.Errorf("no go build in %q", line)
	}
	b.cgoDisabled = cgoRe.MatchString(before) || slices.Contains(env, "CGO_ENABLED=0")
	b.trimpath = regexp.MustCompile(`(^|\s)-trimpath(\s|$)`).MatchString(after)
	m := ldflagsRe.FindStringSubmatch(after)
	if m == nil {
		return b, fmt.Errorf("no -ldflags in %q", line)
	}
	ld := m[1] + m[2] + m[3]
	for _, x := range xFlagRe.FindAllStringSubmatch(ld, -1) {
		b.xVars = append(b.xVars, x[1])
	}
	slices.Sort(b.xVars)
	b.otherLD = strings.Fields(xFlagRe.ReplaceAllString(ld, ""))
	slices.Sort(b.otherLD)
	rest := ldflagsRe.ReplaceAllString(after, "")
	if o := outputRe.FindStringSubmatch(" " + rest); o != nil {
		b.output = o[1]
		rest = outputRe.ReplaceAllString(" "+rest, "")
	}
	if f := strings.Fields(rest); len(f) > 0 {
		b.pkg = f[len(f)-1]
	}
	return b, nil
}

// dockerInstr is one Dockerfile instruction, continuation lines joined.
type dockerInstr struct {
	cmd  string // upper-case
	args string
}

func parseDockerfile(data string) []dockerInstr {
	var out []dockerInstr
	var cur strings.Builder
	for line := range strings.Lines(data) {
		line = strings.TrimRight(line, "\r\n")
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if s, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, dockerInstr{strings.ToUpper(cmd), strings.Join(strings.Fields(args), " ")})
		cur.Reset()
	}
	return out
}

// makeVars reads a Makefile's simple variable assignments; $(shell ...) stays opaque.
func makeVars(data string) map[string]string {
	vars := map[string]string{}
	re := regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$`)
	for line := range strings.Lines(data) {
		if m := re.FindStringSubmatch(strings.TrimRight(line, "\n")); m != nil {
			vars[m[1]] = regexp.MustCompile(`\$\(shell [^)]*\)`).ReplaceAllString(m[2], "SHELL")
		}
	}
	return vars
}

func makeExpand(s string, vars map[string]string) string {
	re := regexp.MustCompile(`\$[({]([A-Za-z_][A-Za-z0-9_]*)[)}]`)
	for range 10 {
		next := re.ReplaceAllStringFunc(s, func(ref string) string {
			name := re.FindStringSubmatch(ref)[1]
			if v, ok := vars[name]; ok {
				return v
			}
			return ref
		})
		if next == s {
			break
		}
		s = next
	}
	return s
}

// makeRecipe returns the expanded recipe lines of a Makefile target and its prerequisites.
func makeRecipe(data, target string, vars map[string]string) (prereqs string, lines []string) {
	in := false
	for line := range strings.Lines(data) {
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, target+":"):
			in = true
			prereqs, _, _ = strings.Cut(strings.TrimPrefix(line, target+":"), "##")
		case in && strings.HasPrefix(line, "\t"):
			lines = append(lines, makeExpand(strings.TrimSpace(line), vars))
		case in:
			return prereqs, lines
		}
	}
	return prereqs, lines
}

// TestDockerfile checks that the Dockerfile builds lbprobe like the Makefile (CGO_ENABLED=0,
// -trimpath, the same -X variables including version.Version/Revision/Branch and the same other
// ldflags, ./cmd/lbprobe), that make test's LBPROBE_BINARY is make build's output, and that the
// image's final stage is distroless static nonroot, runs as a non-root USER, and its ENTRYPOINT
// is the binary copied from the build.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	df, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}

	// The Makefile's build.
	vars := makeVars(string(mf))
	_, recipe := makeRecipe(string(mf), "build", vars)
	i := slices.IndexFunc(recipe, func(l string) bool { return strings.Contains(l, "go build") })
	if i < 0 {
		t.Fatalf("Makefile: the build target runs no go build: %q", recipe)
	}
	mk, err := parseGoBuild(recipe[i], nil)
	if err != nil {
		t.Fatalf("Makefile: %v", err)
	}
	unitPre, unit := makeRecipe(string(mf), "unit", vars)
	if !strings.Contains(" "+unitPre+" ", " build ") {
		t.Errorf("Makefile: unit does not depend on build (prerequisites %q)", unitPre)
	}
	if !slices.ContainsFunc(unit, func(l string) bool {
		return regexp.MustCompile(`LBPROBE_BINARY=\S*` + regexp.QuoteMeta(mk.output) + `(\s|$)`).MatchString(l)
	}) {
		t.Errorf("Makefile: unit does not set LBPROBE_BINARY to make build's output %s: %q", mk.output, unit)
	}

	// The Dockerfile's build stage and final stage.
	instrs := parseDockerfile(string(df))
	type stage struct {
		from, name string
		instrs     []dockerInstr
	}
	var stages []stage
	for _, in := range instrs {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "as") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, in)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: want a build stage and a final stage, got %d stages", len(stages))
	}
	var dk goBuild
	buildStage := -1
	for si, s := range stages[:len(stages)-1] {
		var env []string
		for _, in := range s.instrs {
			if in.cmd == "ENV" {
				env = append(env, strings.Fields(in.args)...)
			}
			if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
				if dk, err = parseGoBuild(in.args, env); err != nil {
					t.Fatalf("Dockerfile: %v", err)
				}
				buildStage = si
			}
		}
	}
	if buildStage < 0 {
		t.Fatal("Dockerfile: no RUN go build in a build stage")
	}

	for _, b := range []struct {
		name string
		b    goBuild
	}{{"Makefile", mk}, {"Dockerfile", dk}} {
		if !b.b.cgoDisabled {
			t.Errorf("%s: go build without CGO_ENABLED=0: the binary would link libc dynamically and not run on distroless/static", b.name)
		}
		if !b.b.trimpath {
			t.Errorf("%s: go build without -trimpath", b.name)
		}
		for _, v := range []string{"Version", "Revision", "Branch"} {
			if !slices.Contains(b.b.xVars, versionPkg+"."+v) {
				t.Errorf("%s: ldflags set no -X %s.%s (lbprobe --version and lbprobe_build_info would show it empty); it sets %v", b.name, versionPkg, v, b.b.xVars)
			}
		}
		if b.b.pkg != "./cmd/lbprobe" {
			t.Errorf("%s: go build builds %q, want ./cmd/lbprobe", b.name, b.b.pkg)
		}
	}
	if !slices.Equal(mk.xVars, dk.xVars) {
		t.Errorf("the -X variables differ:\n  Makefile:   %v\n  Dockerfile: %v", mk.xVars, dk.xVars)
	}
	if !slices.Equal(mk.otherLD, dk.otherLD) {
		t.Errorf("the other ldflags differ: Makefile %v, Dockerfile %v", mk.otherLD, dk.otherLD)
	}

	final := stages[len(stages)-1]
	if !regexp.MustCompile(`^gcr\.io/distroless/static(-debian\d+)?:([a-z0-9.-]*-)?nonroot(@sha256:[0-9a-f]{64})?$`).MatchString(final.from) {
		t.Errorf("Dockerfile: the final stage is FROM %s, want gcr.io/distroless/static…:nonroot", final.from)
	}
	var user, entrypoint, copied string
	for _, in := range final.instrs {
		switch in.cmd {
		case "USER":
			user = in.args
		case "ENTRYPOINT":
			entrypoint = in.args
		case "COPY":
			f := strings.Fields(in.args)
			from := ""
			var paths []string
			for _, x := range f {
				if v, ok := strings.CutPrefix(x, "--from="); ok {
					from = v
				} else if !strings.HasPrefix(x, "--") {
					paths = append(paths, x)
				}
			}
			if (from == stages[buildStage].name || from == fmt.Sprint(buildStage)) && len(paths) == 2 && paths[0] == dk.output {
				copied = paths[1]
				if strings.HasSuffix(copied, "/") {
					copied += filepath.Base(dk.output)
				}
			}
		}
	}
	if !slices.Contains([]string{"65532", "65532:65532", "nonroot", "nonroot:nonroot"}, user) {
		t.Errorf("Dockerfile: the final stage's USER is %q, want 65532 or nonroot", user)
	}
	if copied == "" {
		t.Fatalf("Dockerfile: the final stage copies no %s from the build stage", dk.output)
	}
	var ep []string
	if err := json.Unmarshal([]byte(entrypoint), &ep); err != nil || len(ep) == 0 {
		t.Errorf("Dockerfile: ENTRYPOINT %q is not an exec-form JSON array: %v", entrypoint, err)
	} else if ep[0] != copied {
		t.Errorf("Dockerfile: ENTRYPOINT runs %q, want the binary %s", ep[0], copied)
	}
	t.Logf("Makefile: %+v", mk)
	t.Logf("Dockerfile: %+v; final stage FROM %s USER %s ENTRYPOINT %s", dk, final.from, user, entrypoint)
}
