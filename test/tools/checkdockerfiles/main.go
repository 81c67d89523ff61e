// Command checkdockerfiles builds the Go binary of each Dockerfile from exactly the files its
// COPY lines bring into the build stage, without a container runtime, so that a Dockerfile that
// leaves out a file its binary needs fails here and not at release time.
//
// For each Dockerfile (those given, or every one git knows of that is not ignored), it finds the
// stage whose RUN line runs `go build`, copies the sources of that stage's COPY lines before it
// (those without --from) from the repository root, the build context, into a temporary folder
// standing for the stage's WORKDIR, and runs `go build` there with the RUN line's environment
// assignments, build tags and packages. The module cache is the caller's, so nothing is
// downloaded twice. It exits 1 naming each Dockerfile whose binary does not build.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: checkdockerfiles [Dockerfile...]\n\nRun from the repository root (the build context). Without arguments, checks every Dockerfile git knows of.")
	}
	flag.Parse()
	files := flag.Args()
	if len(files) == 0 {
		var err error
		if files, err = listDockerfiles(); err != nil {
			fmt.Fprintln(os.Stderr, "checkdockerfiles:", err)
			os.Exit(2)
		}
	}
	failed := 0
	for _, f := range files {
		if err := check(f); err != nil {
			fmt.Printf("FAIL %s: %v\n", f, err)
			failed++
		}
	}
	if failed > 0 {
		fmt.Printf("%d of %d Dockerfiles do not build their binary from what they copy\n", failed, len(files))
		os.Exit(1)
	}
}

// listDockerfiles returns the Dockerfiles in the working tree that git tracks or would track
// (new ones included, ignored ones not).
func listDockerfiles() ([]string, error) {
	out, err := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		return nil, fmt.Errorf("listing the repository's files: %w", err)
	}
	var files []string
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		base := path.Base(f)
		if base != "Dockerfile" && !strings.HasPrefix(base, "Dockerfile.") && !strings.HasSuffix(base, ".Dockerfile") {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			continue // deleted in the working tree
		}
		if !slices.Contains(files, f) {
			files = append(files, f)
		}
	}
	if len(files) == 0 {
		return nil, errors.New("no Dockerfile found")
	}
	return files, nil
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	cmd  string // upper case
	args string
}

// parse reads a Dockerfile's instructions.
func parse(file string) ([]instruction, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	var (
		out     []instruction
		pending strings.Builder
		start   int
	)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if pending.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if pending.Len() == 0 {
			start = n
		} else if strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			pending.WriteString(cont + " ")
			continue
		}
		pending.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(pending.String()), " ")
		out = append(out, instruction{line: start, cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)})
		pending.Reset()
	}
	return out, sc.Err()
}

// goBuild is what a RUN line's `go build` needs: its environment assignments, flags that
// choose files (tags), and packages.
type goBuild struct {
	env, flags, packages []string
}

// valueFlags are the go build flags whose value is the next word when not given with =.
var valueFlags = map[string]bool{
	"-o": true, "-ldflags": true, "-gcflags": true, "-asmflags": true, "-gccgoflags": true, "-tags": true,
	"-mod": true, "-modfile": true, "-p": true, "-C": true, "-pkgdir": true, "-buildmode": true, "-compiler": true,
	"-installsuffix": true, "-overlay": true, "-pgo": true, "-toolexec": true, "-coverpkg": true, "-covermode": true,
}

var envAssignment = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

// findGoBuild returns the go build command of a RUN line, if it has one.
func findGoBuild(run string) (*goBuild, bool) {
	words := splitWords(run)
	// One command at a time: the words between shell operators.
	for len(words) > 0 {
		end := slices.IndexFunc(words, func(w string) bool { return w == "&&" || w == "||" || w == ";" || w == "|" })
		cmd := words
		if end >= 0 {
			cmd, words = words[:end], words[end+1:]
		} else {
			words = nil
		}
		i := 0
		for i < len(cmd) && envAssignment.MatchString(cmd[i]) {
			i++
		}
		if i+1 >= len(cmd) || cmd[i] != "go" || cmd[i+1] != "build" {
			continue
		}
		b := &goBuild{env: cmd[:i]}
		for j := i + 2; j < len(cmd); j++ {
			w := cmd[j]
			if !strings.HasPrefix(w, "-") {
				b.packages = append(b.packages, w)
				continue
			}
			name, _, hasValue := strings.Cut(strings.TrimPrefix(w, "-"), "=")
			name = "-" + strings.TrimPrefix(name, "-")
			value := ""
			if !hasValue && valueFlags[name] && j+1 < len(cmd) {
				j++
				value = cmd[j]
			}
			if name == "-tags" || name == "-mod" {
				if hasValue {
					b.flags = append(b.flags, w)
				} else {
					b.flags = append(b.flags, name, value)
				}
			}
		}
		if len(b.packages) == 0 {
			b.packages = []string{"."}
		}
		return b, true
	}
	return nil, false
}

// splitWords splits a shell command line into words, honouring single and double quotes and
// backslashes; it expands nothing.
func splitWords(s string) []string {
	var (
		words []string
		cur   strings.Builder
		inW   bool
		quote rune
	)
	runes := []rune(s)
	for i := 0; i < len(runes); i++ {
		r := runes[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' && i+1 < len(runes) {
				i++
				cur.WriteRune(runes[i])
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inW = r, true
		case r == '\\' && i+1 < len(runes):
			i++
			cur.WriteRune(runes[i])
			inW = true
		case r == ' ' || r == '\t':
			if inW {
				words = append(words, cur.String())
				cur.Reset()
				inW = false
			}
		case r == ';':
			if inW {
				words = append(words, cur.String())
				cur.Reset()
				inW = false
			}
			words = append(words, ";")
		default:
			cur.WriteRune(r)
			inW = true
		}
	}
	if inW {
		words = append(words, cur.String())
	}
	return words
}

// copyLine is the part of a COPY instruction that matters here.
type copyLine struct {
	srcs []string
	dst  string
	from bool // --from=: copies from another stage or image, not from the context
}

func parseCopy(args string) (copyLine, error) {
	if strings.HasPrefix(args, "[") {
		return copyLine{}, errors.New("the JSON form of COPY is not supported")
	}
	var c copyLine
	var words []string
	for _, w := range splitWords(args) {
		if strings.HasPrefix(w, "--") {
			c.from = c.from || strings.HasPrefix(w, "--from=")
			continue
		}
		words = append(words, w)
	}
	if len(words) < 2 {
		return copyLine{}, fmt.Errorf("COPY %s: needs a source and a destination", args)
	}
	c.srcs, c.dst = words[:len(words)-1], words[len(words)-1]
	return c, nil
}

// check builds the Dockerfile's Go binary from what its build stage copies.
func check(dockerfile string) error {
	instrs, err := parse(dockerfile)
	if err != nil {
		return err
	}
	// The stage of the go build: from the FROM before it up to it.
	stageStart, buildAt := -1, -1
	var build *goBuild
	for i, in := range instrs {
		switch in.cmd {
		case "FROM":
			stageStart = i
		case "RUN":
			if b, ok := findGoBuild(in.args); ok {
				buildAt, build = i, b
			}
		}
		if build != nil {
			break
		}
	}
	if build == nil {
		fmt.Printf("skip %s: no RUN line runs go build\n", dockerfile)
		return nil
	}
	tmp, err := os.MkdirTemp("", "checkdockerfiles-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	src, out := filepath.Join(tmp, "src"), filepath.Join(tmp, "out")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	// The WORKDIR of the go build, and the COPY lines before it.
	workdir := "/"
	var copies []copyLine
	var dirs []string // the WORKDIR at each COPY
	for _, in := range instrs[stageStart+1 : buildAt] {
		switch in.cmd {
		case "WORKDIR":
			if path.IsAbs(in.args) {
				workdir = path.Clean(in.args)
			} else {
				workdir = path.Join(workdir, in.args)
			}
		case "ADD":
			return fmt.Errorf("line %d: ADD is not supported; use COPY", in.line)
		case "COPY":
			c, err := parseCopy(in.args)
			if err != nil {
				return fmt.Errorf("line %d: %w", in.line, err)
			}
			if !c.from {
				copies, dirs = append(copies, c), append(dirs, workdir)
			}
		}
	}
	var brought []string
	for i, c := range copies {
		brought = append(brought, c.srcs...)
		if err := copyInto(src, workdir, dirs[i], c); err != nil {
			return err
		}
	}
	what := fmt.Sprintf("go build %s with only %s", strings.Join(build.packages, " "), strings.Join(brought, " "))
	if output, err := build.run(src, out); err != nil {
		// Say whether the COPY lines are to blame or the code itself.
		where := "it builds in the working tree: the COPY lines leave out what it needs"
		if _, err := build.run(".", out); err != nil {
			where = "it does not build in the working tree either"
		}
		return fmt.Errorf("%s: %w (%s)\n%s", what, err, where, strings.TrimRight(string(output), "\n"))
	}
	fmt.Printf("ok   %s: %s\n", dockerfile, what)
	return nil
}

// run runs the go build in dir, writing the binaries into out. -trimpath, as release builds
// use, also keeps the build cache's keys free of the temporary folder's name.
func (b *goBuild) run(dir, out string) ([]byte, error) {
	args := append([]string{"build", "-trimpath", "-o", out + string(filepath.Separator)}, b.flags...)
	cmd := exec.Command("go", append(args, b.packages...)...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GOWORK=off"), b.env...)
	return cmd.CombinedOutput()
}

// copyInto does what a COPY line does to the build stage's file system, for the part of it
// under buildDir (the go build's WORKDIR), which root stands for. at is the WORKDIR of the COPY.
func copyInto(root, buildDir, at string, c copyLine) error {
	dst := c.dst
	if !path.IsAbs(dst) {
		dst = path.Join(at, dst)
	}
	toDir := strings.HasSuffix(c.dst, "/") || c.dst == "." || len(c.srcs) > 1
	rel, err := filepath.Rel(buildDir, path.Clean(dst))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil // outside the build's folder: it cannot change what go build sees
	}
	target := filepath.Join(root, rel)
	for _, pattern := range c.srcs {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			return fmt.Errorf("COPY %s: %w", pattern, err)
		}
		if len(matches) == 0 {
			return fmt.Errorf("COPY %s: no such file in the build context", pattern)
		}
		for _, m := range matches {
			info, err := os.Lstat(m)
			if err != nil {
				return err
			}
			switch {
			case info.IsDir():
				// A folder's contents are copied into the destination.
				if err := copyTree(m, target); err != nil {
					return err
				}
			case toDir:
				if err := copyFile(m, filepath.Join(target, filepath.Base(m)), info); err != nil {
					return err
				}
			default:
				if err := copyFile(m, target, info); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// copyTree copies the folder from's contents into to.
func copyTree(from, to string) error {
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return copyFile(p, filepath.Join(to, rel), info)
	})
}

// copyFile copies one file, or recreates one symbolic link, as COPY does.
func copyFile(from, to string, info fs.FileInfo) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		link, err := os.Readlink(from)
		if err != nil {
			return err
		}
		return os.Symlink(link, to)
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return errors.Join(err, out.Close())
	}
	return out.Close()
}
