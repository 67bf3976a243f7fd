package artifact

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"github.com/weirstream/weir/internal/launch"
)

// notJob is the fix for a file that is no kind of Weir job binary.
var notJob = "a Weir job is a Go program that uses Weir's DataStream API (" + launch.ModulePath +
	"/stream), built with `go build`; give the path of that binary"

// Check reports whether the file at path is a Weir job binary that this
// machine can run, and if not returns an *Error that says why and what to do:
//   - the file exists and is a regular file;
//   - it is an executable in this machine's object format (ELF, Mach-O or PE);
//   - it was built by Go;
//   - for this machine's GOOS and GOARCH;
//   - and uses Weir: its main module is Weir's (launch.ModulePath) or depends
//     on it;
//   - and it has execute permission (except on Windows).
func Check(path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &Error{path, "does not exist", "give the path of a job binary built with `go build`"}
	case err != nil:
		return &Error{path, "cannot be read: " + cause(err), "check the path and the permissions of the file and its directories"}
	case st.IsDir():
		return &Error{path, "is a directory", fmt.Sprintf("build it first (go build -o myjob %s) and pass the binary", path)}
	case !st.Mode().IsRegular():
		return &Error{path, fmt.Sprintf("is not a regular file (it is a %s)", kindOf(st.Mode())), "give the path of a job binary built with `go build`"}
	}
	f, err := os.Open(path)
	if err != nil {
		return &Error{path, "cannot be read: " + cause(err), "check the permissions of the file and its directories"}
	}
	defer f.Close()
	if err := CheckFile(f, st.Size(), path); err != nil {
		return err
	}
	if runtime.GOOS != "windows" && st.Mode()&0o111 == 0 {
		return &Error{path, "is not executable", fmt.Sprintf("chmod +x %s, or build it again with `go build`", showPath(path))}
	}
	return nil
}

// CheckFile is Check on the contents of a file already open, size bytes
// read through r; name names it in errors (a path, or an upload's file name).
// It checks everything Check does but the file's type and permissions, so the
// Dispatcher can check an upload before storing it.
func CheckFile(r io.ReaderAt, size int64, name string) error {
	if size == 0 {
		return &Error{name, "is empty", "build the job again with `go build`, and copy or upload the whole binary"}
	}
	head := make([]byte, min(size, 512))
	if n, err := r.ReadAt(head, 0); n < len(head) {
		return &Error{name, "cannot be read: " + cause(err), "check that the file is readable and was copied or uploaded whole"}
	}
	host := runtime.GOOS + "/" + runtime.GOARCH
	rebuild := fmt.Sprintf("rebuild it with GOOS=%s GOARCH=%s go build", runtime.GOOS, runtime.GOARCH)

	obj, known, err := inspect(r, size, head)
	switch {
	case !known && bytes.HasPrefix(head, []byte("#!")):
		return &Error{name, fmt.Sprintf("is a script (%s), not a compiled program", shebang(head)), notJob + ", not a script that starts it"}
	case !known && isText(head):
		return &Error{name, "is a text file, not a compiled program", notJob}
	case !known && hostFormat() != "":
		return &Error{name, fmt.Sprintf("is not a program this machine can run: it is not an %s executable", hostFormat()), notJob}
	case err != nil:
		return &Error{name, fmt.Sprintf("is a damaged or truncated %s file (%v)", obj.format, err), "build it again with `go build`, and copy or upload the whole binary"}
	case known && hostFormat() != "" && obj.format != hostFormat():
		return &Error{name, fmt.Sprintf("is %s, this machine runs %s", obj.describe(), host), rebuild}
	case known && obj.notProgram != "":
		return &Error{name, fmt.Sprintf("is %s, not a program", obj.notProgram), "build the job as a program, with plain `go build`"}
	}

	bi, err := buildinfo.Read(r)
	if err != nil {
		what := "is not a Go program"
		if known {
			what = fmt.Sprintf("is %s but not a Go program", obj.describe())
		}
		return &Error{name, what, notJob}
	}
	settings := map[string]string{}
	for _, s := range bi.Settings {
		settings[s.Key] = s.Value
	}
	if m := settings["-buildmode"]; m != "" && m != "exe" && m != "pie" {
		return &Error{name, fmt.Sprintf("is a Go program built with -buildmode=%s, not an executable", m), "build the job with plain `go build`"}
	}
	goos, goarch := settings["GOOS"], settings["GOARCH"]
	if goos == "" {
		goos = obj.goos
	}
	if goarch == "" || len(obj.arches) > 1 {
		// A universal Mach-O binary runs on any of its architectures; its
		// build information is only that of one of them.
		goarch = obj.arch()
	}
	if goos != runtime.GOOS || goarch != runtime.GOARCH {
		built := goos + "/" + goarch
		if goos == "" || goarch == "" {
			built = obj.describe()
		}
		return &Error{name, fmt.Sprintf("is built for %s, this machine runs %s", built, host), rebuild}
	}
	uses := bi.Main.Path == launch.ModulePath
	for _, d := range bi.Deps {
		uses = uses || d.Path == launch.ModulePath
	}
	if !uses {
		return &Error{name, "is a Go program but not a Weir job: it does not use " + launch.ModulePath,
			"a Weir job imports " + launch.ModulePath + "/stream, builds a dataflow with it and calls Execute; build that program with `go build` and give its binary"}
	}
	return nil
}

// object is what a file's object header says about it.
type object struct {
	format     string   // "ELF", "Mach-O" or "PE"
	goos       string   // the operating system it is for, in GOOS terms; "" if unknown
	arches     []string // its machines in GOARCH terms ("" or a header's name if not a Go architecture)
	notProgram string   // what it is if it is no executable program (a shared library, …); "" if it is one
}

// arch returns the architecture the object is for: this machine's if it is
// one of the object's (a universal binary), else its first.
func (o object) arch() string {
	for _, a := range o.arches {
		if a == runtime.GOARCH {
			return a
		}
	}
	if len(o.arches) == 0 {
		return ""
	}
	return o.arches[0]
}

// describe says what the object is: "a Linux/ELF binary for arm64".
func (o object) describe() string {
	osName := map[string]string{"linux": "Linux", "darwin": "macOS", "windows": "Windows", "freebsd": "FreeBSD",
		"netbsd": "NetBSD", "openbsd": "OpenBSD", "solaris": "Solaris", "android": "Android", "ios": "iOS"}[o.goos]
	kind := o.format + " binary"
	if osName != "" {
		kind = osName + "/" + kind
	}
	if len(o.arches) > 1 {
		return fmt.Sprintf("a universal %s for %s", kind, strings.Join(o.arches, " and "))
	}
	return fmt.Sprintf("a %s for %s", kind, o.arch())
}

// hostFormat is the object format of this machine's executables, or "" for a
// platform whose format this package does not read (AIX, Plan 9, WebAssembly).
func hostFormat() string {
	switch runtime.GOOS {
	case "darwin", "ios":
		return "Mach-O"
	case "windows":
		return "PE"
	case "aix", "plan9", "js", "wasip1":
		return ""
	}
	return "ELF"
}

// inspect reads the object header of the file whose first bytes are head.
// known says whether head starts like an ELF, Mach-O or PE file; err is why
// such a file's header could not be read.
func inspect(r io.ReaderAt, size int64, head []byte) (o object, known bool, err error) {
	sr := io.NewSectionReader(r, 0, size)
	switch {
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		o.format = "ELF"
		f, err := elf.NewFile(sr)
		if err != nil {
			return o, true, err
		}
		o.goos, o.arches = elfOS(f), []string{elfArch(f)}
		switch f.Type {
		case elf.ET_EXEC:
		case elf.ET_DYN:
			// Position-independent executables and shared libraries are both
			// ET_DYN; an executable has an entry point.
			if f.Entry == 0 {
				o.notProgram = "a shared library"
			}
		case elf.ET_REL:
			o.notProgram = "an object file"
		case elf.ET_CORE:
			o.notProgram = "a core dump"
		default:
			o.notProgram = "an ELF file of type " + f.Type.String()
		}
		return o, true, nil
	case bytes.HasPrefix(head, []byte("\xFE\xED\xFA")) || len(head) > 1 && bytes.HasPrefix(head[1:], []byte("\xFA\xED\xFE")):
		o.format, o.goos = "Mach-O", "darwin"
		f, err := macho.NewFile(sr)
		if err != nil {
			return o, true, err
		}
		o.arches = []string{machoArch(f.Cpu)}
		o.notProgram = machoNotProgram(f.Type)
		return o, true, nil
	case bytes.HasPrefix(head, []byte("\xCA\xFE\xBA\xBE")) || bytes.HasPrefix(head, []byte("\xCA\xFE\xBA\xBF")):
		// Also the magic number of Java class files: a file that does not
		// read as a universal binary is taken for an unknown one.
		o.format, o.goos = "Mach-O", "darwin"
		f, err := macho.NewFatFile(sr)
		if err != nil || len(f.Arches) == 0 {
			return object{}, false, nil
		}
		for _, a := range f.Arches {
			o.arches = append(o.arches, machoArch(a.Cpu))
			if o.notProgram == "" {
				o.notProgram = machoNotProgram(a.Type)
			}
		}
		return o, true, nil
	case bytes.HasPrefix(head, []byte("MZ")):
		o.format, o.goos = "PE", "windows"
		f, err := pe.NewFile(sr)
		if err != nil {
			return o, true, err
		}
		o.arches = []string{peArch(f.Machine)}
		if f.Characteristics&pe.IMAGE_FILE_DLL != 0 {
			o.notProgram = "a DLL"
		} else if f.Characteristics&pe.IMAGE_FILE_EXECUTABLE_IMAGE == 0 {
			o.notProgram = "an object file"
		}
		return o, true, nil
	}
	return object{}, false, nil
}

// elfOS returns the GOOS an ELF file is for, as far as its header says.
func elfOS(f *elf.File) string {
	switch f.OSABI {
	case elf.ELFOSABI_NONE, elf.ELFOSABI_LINUX:
		return "linux"
	case elf.ELFOSABI_FREEBSD:
		return "freebsd"
	case elf.ELFOSABI_NETBSD:
		return "netbsd"
	case elf.ELFOSABI_OPENBSD:
		return "openbsd"
	case elf.ELFOSABI_SOLARIS:
		return "solaris"
	}
	return ""
}

// elfArch returns the GOARCH of an ELF file's machine.
func elfArch(f *elf.File) string {
	le := f.ByteOrder == binary.LittleEndian
	b64 := f.Class == elf.ELFCLASS64
	switch f.Machine {
	case elf.EM_X86_64:
		return "amd64"
	case elf.EM_386:
		return "386"
	case elf.EM_AARCH64:
		return "arm64"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_RISCV:
		if b64 {
			return "riscv64"
		}
	case elf.EM_PPC64:
		if le {
			return "ppc64le"
		}
		return "ppc64"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_LOONGARCH:
		return "loong64"
	case elf.EM_MIPS:
		switch {
		case b64 && le:
			return "mips64le"
		case b64:
			return "mips64"
		case le:
			return "mipsle"
		}
		return "mips"
	}
	return f.Machine.String()
}

// machoArch returns the GOARCH of a Mach-O CPU type.
func machoArch(c macho.Cpu) string {
	switch c {
	case macho.CpuAmd64:
		return "amd64"
	case macho.CpuArm64:
		return "arm64"
	case macho.Cpu386:
		return "386"
	case macho.CpuArm:
		return "arm"
	}
	return c.String()
}

// machoNotProgram says what a Mach-O file of type t is if it is no program.
func machoNotProgram(t macho.Type) string {
	switch t {
	case macho.TypeExec:
		return ""
	case macho.TypeDylib:
		return "a shared library"
	case macho.TypeBundle:
		return "a bundle"
	case macho.TypeObj:
		return "an object file"
	}
	return "a Mach-O file of type " + t.String()
}

// peArch returns the GOARCH of a PE machine type.
func peArch(m uint16) string {
	switch m {
	case pe.IMAGE_FILE_MACHINE_AMD64:
		return "amd64"
	case pe.IMAGE_FILE_MACHINE_I386:
		return "386"
	case pe.IMAGE_FILE_MACHINE_ARM64:
		return "arm64"
	case pe.IMAGE_FILE_MACHINE_ARMNT:
		return "arm"
	}
	return fmt.Sprintf("machine %#x", m)
}

// shebang returns a script's #! line, shortened.
func shebang(head []byte) string {
	line, _, _ := bytes.Cut(head, []byte("\n"))
	s := strings.TrimSpace(string(line))
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

// isText reports whether head looks like the start of a text file: no NUL
// bytes and no control characters but tabs, line and page breaks and escapes.
func isText(head []byte) bool {
	for _, c := range head {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b || c == 0x7f {
			return false
		}
	}
	return true
}

// cause returns the reason of a file system error without the path it
// repeats.
func cause(err error) string {
	if err == nil {
		return "it is shorter than its size"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// kindOf names the type of a file that is not a regular file.
func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file"
}
