package render

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/Masterminds/sprig/v3"
)

// sprigFuncs is sprig's whole function map, from which allowed takes what it keeps as is.
var sprigFuncs = sprig.TxtFuncMap()

// fromSprig returns sprig's function name; it panics at start-up if sprig has no such function.
func fromSprig(name string) any {
	fn, ok := sprigFuncs[name]
	if !ok {
		panic(fmt.Sprintf("sprig has no function %q", name))
	}
	return fn
}

// allowed is every function a template may call, by name, each chosen on purpose: its cost is
// linear in its arguments (or, for the bounded replacements below, checked before the result is
// built), it reads nothing outside its arguments, and it returns the same result every time.
// On top of that, every call checks the render deadline and refuses a result larger than
// MaxValueBytes, so that no loop can grow a value without bound.
//
// A nil entry is text/template's own function, which returns one of its arguments, a part of
// one, or a boolean or length, and so needs no bound. docs/template-functions.md lists the same
// names; a test keeps the two equal.
var allowed = map[string]any{
	// Strings. replace is bounded: an empty old string inserts new between every character.
	"trim":       fromSprig("trim"),
	"trimAll":    fromSprig("trimAll"),
	"trimPrefix": fromSprig("trimPrefix"),
	"trimSuffix": fromSprig("trimSuffix"),
	"nospace":    fromSprig("nospace"),
	"upper":      fromSprig("upper"),
	"lower":      fromSprig("lower"),
	"title":      fromSprig("title"),
	"untitle":    fromSprig("untitle"),
	"snakecase":  fromSprig("snakecase"),
	"camelcase":  fromSprig("camelcase"),
	"kebabcase":  fromSprig("kebabcase"),
	"substr":     fromSprig("substr"),
	"trunc":      fromSprig("trunc"),
	"abbrev":     fromSprig("abbrev"),
	"contains":   fromSprig("contains"),
	"hasPrefix":  fromSprig("hasPrefix"),
	"hasSuffix":  fromSprig("hasSuffix"),
	"quote":      fromSprig("quote"),
	"squote":     fromSprig("squote"),
	"cat":        fromSprig("cat"),
	"replace":    replace,

	// Splitting and joining. join is bounded: its separator is repeated once per element.
	"split":     fromSprig("split"),
	"splitList": fromSprig("splitList"),
	"splitn":    fromSprig("splitn"),
	"join":      join,

	// Defaults and choices.
	"default":  fromSprig("default"),
	"empty":    fromSprig("empty"),
	"coalesce": fromSprig("coalesce"),
	"ternary":  fromSprig("ternary"),
	"all":      fromSprig("all"),
	"any":      fromSprig("any"),
	"fail":     fromSprig("fail"),

	// Conversion and encoding.
	"toString":   fromSprig("toString"),
	"toStrings":  fromSprig("toStrings"),
	"toJson":     fromSprig("toJson"),
	"toRawJson":  fromSprig("toRawJson"),
	"fromJson":   fromSprig("fromJson"),
	"b64enc":     fromSprig("b64enc"),
	"b64dec":     fromSprig("b64dec"),
	"sha1sum":    fromSprig("sha1sum"),
	"sha256sum":  fromSprig("sha256sum"),
	"sha512sum":  fromSprig("sha512sum"),
	"adler32sum": fromSprig("adler32sum"),

	// Numbers. A number used as a range count is bounded by the range itself.
	"atoi":    fromSprig("atoi"),
	"int":     fromSprig("int"),
	"int64":   fromSprig("int64"),
	"float64": fromSprig("float64"),
	"add":     fromSprig("add"),
	"add1":    fromSprig("add1"),
	"sub":     fromSprig("sub"),
	"mul":     fromSprig("mul"),
	"div":     fromSprig("div"),
	"mod":     fromSprig("mod"),
	"max":     fromSprig("max"),
	"min":     fromSprig("min"),

	// Lists and dictionaries. None changes its arguments: each returns a new value.
	"list":   fromSprig("list"),
	"dict":   fromSprig("dict"),
	"get":    fromSprig("get"),
	"hasKey": fromSprig("hasKey"),
	// keys and values in key order: sprig's follow the map's iteration order, which Go
	// randomizes, so the same execution would render different Jobs.
	"keys":    sortedKeys,
	"values":  sortedValues,
	"pick":    fromSprig("pick"),
	"omit":    fromSprig("omit"),
	"pluck":   fromSprig("pluck"),
	"dig":     fromSprig("dig"),
	"first":   fromSprig("first"),
	"last":    fromSprig("last"),
	"rest":    fromSprig("rest"),
	"initial": fromSprig("initial"),
	"append":  fromSprig("append"),
	"prepend": fromSprig("prepend"),
	"concat":  fromSprig("concat"),
	"reverse": fromSprig("reverse"),
	"has":     fromSprig("has"),
	"compact": fromSprig("compact"),

	// Regular expressions (RE2: one search is linear in the input, times the size of the
	// expression). All but regexQuoteMeta are bounded: see compileRegexp, scan and regexReplace.
	"regexMatch":             regexMatch,
	"regexFind":              regexFind,
	"regexFindAll":           budgeted(func(b *budget) any { return b.regexFindAll }),
	"regexSplit":             budgeted(func(b *budget) any { return b.regexSplit }),
	"regexReplaceAll":        budgeted(func(b *budget) any { return b.regexReplaceAll }),
	"regexReplaceAllLiteral": budgeted(func(b *budget) any { return b.regexReplaceAllLiteral }),
	"regexQuoteMeta":         fromSprig("regexQuoteMeta"),

	// Paths, always with forward slashes.
	"base":  fromSprig("base"),
	"dir":   fromSprig("dir"),
	"clean": fromSprig("clean"),
	"ext":   fromSprig("ext"),
	"isAbs": fromSprig("isAbs"),

	// Types.
	"kindOf": fromSprig("kindOf"),
	"kindIs": fromSprig("kindIs"),

	// text/template's functions that build strings, replaced by the same functions so that their
	// results are bounded; printf also refuses widths that would pad without bound.
	"print":    fmt.Sprint,
	"printf":   printf,
	"println":  fmt.Sprintln,
	"html":     template.HTMLEscaper,
	"js":       template.JSEscaper,
	"urlquery": template.URLQueryEscaper,

	// text/template's own logic, comparisons and access.
	"and":   nil,
	"or":    nil,
	"not":   nil,
	"eq":    nil,
	"ne":    nil,
	"lt":    nil,
	"le":    nil,
	"gt":    nil,
	"ge":    nil,
	"len":   nil,
	"index": nil,
	"slice": nil,
}

// Why functions are left out.
const (
	whySize     = "it can build output of any size"
	whySquare   = "its cost grows with the square of its input"
	whyRandom   = "its result is random"
	whyCrypto   = "it generates keys, certificates, password hashes or ciphertext: slow by design, often random, and secrets do not belong in a command line"
	whyEnv      = "it reads the manager's environment"
	whyNetwork  = "it queries DNS from the manager"
	whyTime     = "date and time functions read the clock or work on times, and a template sees no times"
	whyOS       = "its result depends on the manager's operating system (base, dir, clean, ext and isAbs are allowed)"
	whyMutate   = "it changes its argument in place"
	whyAlias    = "it is another name for an allowed function"
	whyMust     = "the same function without must is allowed"
	whyUnneeded = "it is not needed to build a command line, and each allowed function is one more to bound"
	whyCall     = "no value a template sees is a function"
)

// excluded is every function sprig or text/template has that templates may not call, with the
// reason, which the error names. A test checks that each of sprig's functions is either allowed
// or excluded, so that a new sprig version cannot add a function unnoticed.
var excluded = map[string]string{
	"repeat":    whySize,
	"until":     whySize,
	"untilStep": whySize,
	"seq":       whySize,
	"indent":    whySize,
	"nindent":   whySize,

	"uniq":             whySquare,
	"mustUniq":         whySquare,
	"without":          whySquare,
	"mustWithout":      whySquare,
	"wrapWith":         whySquare,
	"toPrettyJson":     whySquare,
	"mustToPrettyJson": whySquare,

	"randAlphaNum": whyRandom,
	"randAlpha":    whyRandom,
	"randAscii":    whyRandom,
	"randNumeric":  whyRandom,
	"randBytes":    whyRandom,
	"randInt":      whyRandom,
	"shuffle":      whyRandom,
	"uuidv4":       whyRandom,

	"bcrypt":                   whyCrypto,
	"htpasswd":                 whyCrypto,
	"derivePassword":           whyCrypto,
	"genPrivateKey":            whyCrypto,
	"buildCustomCert":          whyCrypto,
	"genCA":                    whyCrypto,
	"genCAWithKey":             whyCrypto,
	"genSelfSignedCert":        whyCrypto,
	"genSelfSignedCertWithKey": whyCrypto,
	"genSignedCert":            whyCrypto,
	"genSignedCertWithKey":     whyCrypto,
	"encryptAES":               whyCrypto,
	"decryptAES":               whyCrypto,

	"env":       whyEnv,
	"expandenv": whyEnv,

	"getHostByName": whyNetwork,

	"now":              whyTime,
	"ago":              whyTime,
	"date":             whyTime,
	"dateInZone":       whyTime,
	"date_in_zone":     whyTime,
	"dateModify":       whyTime,
	"date_modify":      whyTime,
	"mustDateModify":   whyTime,
	"must_date_modify": whyTime,
	"htmlDate":         whyTime,
	"htmlDateInZone":   whyTime,
	"toDate":           whyTime,
	"mustToDate":       whyTime,
	"unixEpoch":        whyTime,
	"duration":         whyTime,
	"durationRound":    whyTime,

	"osBase":  whyOS,
	"osClean": whyOS,
	"osDir":   whyOS,
	"osExt":   whyOS,
	"osIsAbs": whyOS,

	"set":                whyMutate,
	"unset":              whyMutate,
	"merge":              whyMutate,
	"mergeOverwrite":     whyMutate,
	"mustMerge":          whyMutate,
	"mustMergeOverwrite": whyMutate,
	"sortAlpha":          whyMutate,

	"trimall": whyAlias,
	"tuple":   whyAlias,
	"push":    whyAlias,
	"biggest": whyAlias,

	"mustAppend":                 whyMust,
	"mustPush":                   whyMust,
	"mustPrepend":                whyMust,
	"mustFirst":                  whyMust,
	"mustLast":                   whyMust,
	"mustRest":                   whyMust,
	"mustInitial":                whyMust,
	"mustReverse":                whyMust,
	"mustHas":                    whyMust,
	"mustCompact":                whyMust,
	"mustSlice":                  whyMust,
	"mustFromJson":               whyMust,
	"mustToJson":                 whyMust,
	"mustToRawJson":              whyMust,
	"mustRegexFind":              whyMust,
	"mustRegexFindAll":           whyMust,
	"mustRegexMatch":             whyMust,
	"mustRegexReplaceAll":        whyMust,
	"mustRegexReplaceAllLiteral": whyMust,
	"mustRegexSplit":             whyMust,

	"hello":         whyUnneeded,
	"abbrevboth":    whyUnneeded,
	"initials":      whyUnneeded,
	"swapcase":      whyUnneeded,
	"plural":        whyUnneeded,
	"wrap":          whyUnneeded,
	"chunk":         whyUnneeded,
	"mustChunk":     whyUnneeded,
	"add1f":         whyUnneeded,
	"addf":          whyUnneeded,
	"subf":          whyUnneeded,
	"mulf":          whyUnneeded,
	"divf":          whyUnneeded,
	"maxf":          whyUnneeded,
	"minf":          whyUnneeded,
	"ceil":          whyUnneeded,
	"floor":         whyUnneeded,
	"round":         whyUnneeded,
	"toDecimal":     whyUnneeded,
	"b32enc":        whyUnneeded,
	"b32dec":        whyUnneeded,
	"semver":        whyUnneeded,
	"semverCompare": whyUnneeded,
	"urlParse":      whyUnneeded,
	"urlJoin":       whyUnneeded,
	"typeOf":        whyUnneeded,
	"typeIs":        whyUnneeded,
	"typeIsLike":    whyUnneeded,
	"deepEqual":     whyUnneeded,
	"deepCopy":      whyUnneeded,
	"mustDeepCopy":  whyUnneeded,

	"call": whyCall,
}

// budgeted builds, for each render, a function that checks the budget while it runs.
type budgeted func(b *budget) any

// isAllowed says whether templates may call the function name.
func isAllowed(name string) bool {
	_, ok := allowed[name]
	return ok
}

// bind adds to b.funcs the functions of names (all allowed) that it lacks, as b's templates
// see them: each checks the deadline before and after it runs and refuses a result larger than
// MaxValueBytes or nested deeper than MaxValueDepth; a panic becomes an error. Only the
// functions a template calls are bound: binding builds a reflected wrapper for each.
func (b *budget) bind(names map[string]bool) {
	for name := range names {
		if _, done := b.funcs[name]; done {
			continue
		}
		switch fn := allowed[name].(type) {
		case nil:
		case budgeted:
			b.funcs[name] = b.wrap(fn(b))
		default:
			b.funcs[name] = b.wrap(fn)
		}
	}
}

var errorType = reflect.TypeFor[error]()

// wrap returns fn with the checks of bind, as a function returning its result and an error.
func (b *budget) wrap(fn any) any {
	f := reflect.ValueOf(fn)
	t := f.Type()
	in := make([]reflect.Type, t.NumIn())
	for i := range in {
		in[i] = t.In(i)
	}
	zero, noError := reflect.Zero(t.Out(0)), reflect.Zero(errorType)
	fail := func(err error) []reflect.Value {
		return []reflect.Value{zero, reflect.ValueOf(&err).Elem()}
	}
	return reflect.MakeFunc(reflect.FuncOf(in, []reflect.Type{t.Out(0), errorType}, t.IsVariadic()), func(args []reflect.Value) (out []reflect.Value) {
		if err := b.check(); err != nil {
			return fail(err)
		}
		defer func() {
			if r := recover(); r != nil {
				err, ok := r.(error)
				if !ok {
					err = fmt.Errorf("%v", r)
				}
				out = fail(err)
			}
		}()
		var res []reflect.Value
		if t.IsVariadic() {
			res = f.CallSlice(args)
		} else {
			res = f.Call(args)
		}
		if len(res) == 2 && !res[1].IsNil() {
			return res
		}
		if err := checkValue(res[0]); err != nil {
			return fail(err)
		}
		if err := b.check(); err != nil {
			return fail(err)
		}
		return []reflect.Value{res[0], noError}
	}).Interface()
}

var (
	errValue = fmt.Errorf("the result is larger than %d KiB, the limit for any value in an action template", MaxValueBytes>>10)
	errDepth = fmt.Errorf("the result is nested more than %d deep, the limit for any value in an action template", MaxValueDepth)
)

// checkValue refuses a value larger than MaxValueBytes or nested deeper than MaxValueDepth. A
// value's size is a string's bytes, or the sizes of a list's elements or a map's keys and
// values plus one per element; anything else counts one. It stops looking once over a limit.
func checkValue(v reflect.Value) error {
	left := MaxValueBytes
	var err error
	var walk func(v reflect.Value, depth int)
	walk = func(v reflect.Value, depth int) {
		if err != nil {
			return
		}
		if depth > MaxValueDepth {
			err = errDepth
			return
		}
		switch v.Kind() {
		case reflect.Invalid:
		case reflect.String:
			left -= v.Len()
		case reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem(), depth)
			}
		case reflect.Pointer:
			left--
			if !v.IsNil() {
				walk(v.Elem(), depth)
			}
		case reflect.Slice, reflect.Array:
			if v.Type().Elem().Kind() == reflect.Uint8 {
				left -= v.Len()
				break
			}
			for i := 0; i < v.Len() && left >= 0 && err == nil; i++ {
				left--
				walk(v.Index(i), depth+1)
			}
		case reflect.Map:
			for it := v.MapRange(); left >= 0 && err == nil && it.Next(); {
				left--
				walk(it.Key(), depth+1)
				walk(it.Value(), depth+1)
			}
		case reflect.Struct:
			for i := 0; i < v.NumField() && left >= 0; i++ {
				walk(v.Field(i), depth+1)
			}
		default:
			left--
		}
		if left < 0 && err == nil {
			err = errValue
		}
	}
	walk(v, 0)
	return err
}

// tooLarge is the error of a function whose result would be size bytes.
func tooLarge(size int) error {
	return fmt.Errorf("the result would be %d bytes, more than the %d KiB allowed for any value in an action template", size, MaxValueBytes>>10)
}

// replace is sprig's replace (old, repl, src), refusing before it builds it a result larger
// than MaxValueBytes.
func replace(old, repl, src string) (string, error) {
	if size := len(src) + strings.Count(src, old)*(len(repl)-len(old)); size > MaxValueBytes {
		return "", tooLarge(size)
	}
	return strings.ReplaceAll(src, old, repl), nil
}

var toStrings = fromSprig("toStrings").(func(any) []string)

// join is sprig's join (sep, list), refusing before it builds it a result larger than
// MaxValueBytes.
func join(sep string, v any) (string, error) {
	parts := toStrings(v)
	size := 0
	for _, p := range parts {
		size += len(p) + len(sep)
	}
	if size > MaxValueBytes {
		return "", tooLarge(size)
	}
	return strings.Join(parts, sep), nil
}

// printf is text/template's printf, refusing widths and precisions larger than MaxValueBytes or
// taken from an argument (*): fmt pads to any width asked.
func printf(format string, args ...any) (string, error) {
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
	spec:
		for i++; i < len(format); i++ {
			switch c := format[i]; {
			case c == '*':
				return "", errors.New("printf widths and precisions taken from an argument (*) are not allowed in action templates")
			case c == '[':
				if j := strings.IndexByte(format[i:], ']'); j > 0 {
					i += j
				}
			case c >= '0' && c <= '9':
				j := i
				for j < len(format) && format[j] >= '0' && format[j] <= '9' {
					j++
				}
				if n, err := strconv.Atoi(format[i:j]); err != nil || n > MaxValueBytes {
					return "", fmt.Errorf("printf width or precision %s is larger than the %d allowed in action templates", format[i:j], MaxValueBytes)
				}
				i = j - 1
			case strings.IndexByte("+-# .", c) >= 0:
			default:
				break spec
			}
		}
	}
	return fmt.Sprintf(format, args...), nil
}

// Bounds of one regular expression search. Go's regexp searches in time linear in the input
// times the size of the compiled expression, and counted repetition multiplies that size:
// `(?:[a-z]{30}){30}` compiles to about a thousand instructions. One search may therefore step
// through at most maxRegexpWork instructions, estimated before the expression is compiled.
const (
	maxRegexpSize = 1000
	maxRegexpWork = 2_000_000
)

// compileRegexp compiles pattern for a call on input, refusing an expression larger than
// maxRegexpSize or a call that could take more than maxRegexpWork steps.
func compileRegexp(pattern, input string) (*regexp.Regexp, error) {
	parsed, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, err
	}
	size := regexpSize(parsed)
	if size > maxRegexpSize {
		return nil, fmt.Errorf("regular expression %q is too large for action templates: it compiles to more than %d instructions", pattern, maxRegexpSize)
	}
	if size*(len(input)+1) > maxRegexpWork {
		return nil, fmt.Errorf("regular expression %q is too large for %d bytes of input in action templates", pattern, len(input))
	}
	return regexp.Compile(pattern)
}

// regexpSize estimates the number of instructions re compiles to, saturating above
// maxRegexpSize.
func regexpSize(re *syntax.Regexp) int {
	n := 1
	switch re.Op {
	case syntax.OpLiteral:
		n = len(re.Rune)
	case syntax.OpRepeat:
		count := re.Max
		if count < 0 {
			count = re.Min + 1
		}
		n = (count + 1) * regexpSize(re.Sub[0])
	default:
		for _, sub := range re.Sub {
			n += 1 + regexpSize(sub)
		}
	}
	return min(n, maxRegexpSize+1)
}

func regexMatch(pattern, s string) (bool, error) {
	re, err := compileRegexp(pattern, s)
	if err != nil {
		return false, err
	}
	return re.MatchString(s), nil
}

func regexFind(pattern, s string) (string, error) {
	re, err := compileRegexp(pattern, s)
	if err != nil {
		return "", err
	}
	return re.FindString(s), nil
}

// regexFindAll is sprig's regexFindAll. Finding every match can take time quadratic in the
// input (each search may scan to its end), so the matches are found by scan.
func (b *budget) regexFindAll(pattern, s string, n int) ([]string, error) {
	re, err := compileRegexp(pattern, s)
	if err != nil {
		return nil, err
	}
	var out []string
	err = b.scan(re, s, func(m string) error {
		if n >= 0 && len(out) >= n {
			return errStop
		}
		out = append(out, m)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	return out, nil
}

// regexSplit is sprig's regexSplit: the matches are found by scan first, and regexp splits
// only when there is time to find them again.
func (b *budget) regexSplit(pattern, s string, n int) ([]string, error) {
	re, err := compileRegexp(pattern, s)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := b.scan(re, s, func(string) error { return nil }); err != nil {
		return nil, err
	}
	if err := b.timeFor(start); err != nil {
		return nil, err
	}
	return re.Split(s, n), nil
}

func (b *budget) regexReplaceAll(pattern, s, repl string) (string, error) {
	return b.regexReplace(pattern, s, repl, false)
}

func (b *budget) regexReplaceAllLiteral(pattern, s, repl string) (string, error) {
	return b.regexReplace(pattern, s, repl, true)
}

// regexReplace is sprig's regexReplaceAll (or, when literal, regexReplaceAllLiteral). A first
// pass, by scan, counts the matches and their bytes; the result is built only when it fits in
// MaxValueBytes (each $ reference in repl expands to at most its match) and there is time to
// find the matches again.
func (b *budget) regexReplace(pattern, s, repl string, literal bool) (string, error) {
	re, err := compileRegexp(pattern, s)
	if err != nil {
		return "", err
	}
	start := time.Now()
	count, matched := 0, 0
	err = b.scan(re, s, func(m string) error {
		count++
		matched += len(m)
		return nil
	})
	if err != nil {
		return "", err
	}
	size := len(s) - matched + count*len(repl)
	if !literal {
		size += strings.Count(repl, "$") * matched
	}
	if size > MaxValueBytes {
		return "", tooLarge(size)
	}
	if err := b.timeFor(start); err != nil {
		return "", err
	}
	if literal {
		return re.ReplaceAllLiteralString(s, repl), nil
	}
	return re.ReplaceAllString(s, repl), nil
}

// errStop ends a scan early without error.
var errStop = errors.New("stop")

// scanAbort carries an error out of a scan's callback.
type scanAbort struct{ err error }

// scan calls fn with each match of re in s, the matches regexp's All functions find, checking
// the deadline before each. An error from fn (or the deadline) ends the scan.
func (b *budget) scan(re *regexp.Regexp, s string, fn func(m string) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			abort, ok := r.(scanAbort)
			if !ok {
				panic(r)
			}
			err = abort.err
		}
	}()
	re.ReplaceAllStringFunc(s, func(m string) string {
		if err := b.check(); err != nil {
			panic(scanAbort{err})
		}
		if err := fn(m); err != nil {
			panic(scanAbort{err})
		}
		return ""
	})
	return nil
}

// timeFor returns the deadline error when work that started at start could not be done again
// before the deadline.
func (b *budget) timeFor(start time.Time) error {
	now := time.Now()
	if now.Add(now.Sub(start)).After(b.deadline) {
		b.exceeded = errTime
	}
	return b.check()
}

// sortedKeys is sprig's keys, sorted.
func sortedKeys(dicts ...map[string]any) []string {
	var k []string
	for _, d := range dicts {
		for key := range d {
			k = append(k, key)
		}
	}
	slices.Sort(k)
	return k
}

// sortedValues is sprig's values, in the order of their sorted keys.
func sortedValues(dict map[string]any) []any {
	v := make([]any, 0, len(dict))
	for _, key := range sortedKeys(dict) {
		v = append(v, dict[key])
	}
	return v
}
