package storage

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/pb/checkpointpb"
)

// Metadata file envelope; see the package documentation.
const (
	// MetadataVersion is the format version this build writes and the
	// newest it reads.
	MetadataVersion   = 1
	metadataHeaderLen = 8 + 4 + 8 + 4
	// maxMetadataSize bounds what ReadMetadata loads; metadata holds file
	// handles and small inline state, never bulk state.
	maxMetadataSize = 1 << 30
)

// metadataMagic starts every metadata file. The first byte has its high
// bit set and the last is a newline, so transfers that strip the eighth bit
// or translate line endings are detected (as PNG does).
var metadataMagic = [8]byte{0x89, 'W', 'E', 'I', 'R', 'C', 'P', '\n'}

var (
	// ErrCorrupt is wrapped by the errors of reading a metadata or keyed
	// state file that is truncated, has a bad checksum, the wrong magic
	// number, or contents that do not make sense. A checkpoint whose
	// metadata is corrupt is unusable; Latest skips it.
	ErrCorrupt = errors.New("corrupt checkpoint file")
	// ErrNewerVersion is wrapped by the errors of reading a file written in
	// a newer format than this build reads. It is not corruption: upgrade
	// Weir to read it.
	ErrNewerVersion = errors.New("checkpoint file format too new")
)

// EncodeMetadata checks md (see ValidateMetadata) and returns the metadata
// file's bytes.
func EncodeMetadata(md *checkpointpb.Metadata) ([]byte, error) {
	if err := ValidateMetadata(md); err != nil {
		return nil, fmt.Errorf("encoding checkpoint metadata: %w", err)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("encoding checkpoint metadata: %w", err)
	}
	out := make([]byte, metadataHeaderLen, metadataHeaderLen+len(body))
	copy(out, metadataMagic[:])
	binary.LittleEndian.PutUint32(out[8:], MetadataVersion)
	binary.LittleEndian.PutUint64(out[12:], uint64(len(body)))
	binary.LittleEndian.PutUint32(out[20:], CRC32C(body))
	return append(out, body...), nil
}

// DecodeMetadata parses a metadata file's bytes; name (the file's URI)
// appears in errors. It checks the envelope, the checksum and then the
// contents (ValidateMetadata). A damaged file gives an ErrCorrupt error, a
// newer format an ErrNewerVersion error; it never panics.
func DecodeMetadata(name string, data []byte) (*checkpointpb.Metadata, error) {
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("checkpoint metadata %s: %w: %s", name, ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(data) < len(metadataMagic) {
		if bytes.HasPrefix(metadataMagic[:], data) {
			return nil, corrupt("truncated: %d bytes, shorter than the %d-byte header", len(data), metadataHeaderLen)
		}
		return nil, corrupt("not a Weir checkpoint metadata file (wrong magic number)")
	}
	if !bytes.Equal(data[:8], metadataMagic[:]) {
		return nil, corrupt("not a Weir checkpoint metadata file (wrong magic number %q)", data[:8])
	}
	if len(data) < metadataHeaderLen {
		return nil, corrupt("truncated: %d bytes, shorter than the %d-byte header", len(data), metadataHeaderLen)
	}
	version := binary.LittleEndian.Uint32(data[8:])
	if version == 0 {
		return nil, corrupt("format version 0")
	}
	if version > MetadataVersion {
		return nil, fmt.Errorf("checkpoint metadata %s: %w: written in format version %d by a newer Weir; this build reads up to version %d, upgrade Weir to restore it", name, ErrNewerVersion, version, MetadataVersion)
	}
	bodyLen := binary.LittleEndian.Uint64(data[12:])
	body := data[metadataHeaderLen:]
	switch {
	case bodyLen > uint64(len(body)):
		return nil, corrupt("truncated: the header announces %d bytes of metadata but only %d follow", bodyLen, len(body))
	case bodyLen < uint64(len(body)):
		return nil, corrupt("%d unexpected bytes after the metadata", uint64(len(body))-bodyLen)
	}
	if got, want := CRC32C(body), binary.LittleEndian.Uint32(data[20:]); got != want {
		return nil, corrupt("checksum mismatch (CRC-32C %08x, header says %08x)", got, want)
	}
	md := &checkpointpb.Metadata{}
	if err := proto.Unmarshal(body, md); err != nil {
		return nil, corrupt("undecodable: %v", err)
	}
	if err := ValidateMetadata(md); err != nil {
		return nil, corrupt("%v", err)
	}
	return md, nil
}

// WriteMetadata writes md as the metadata file of loc, atomically. Write
// it after every file it names: its presence marks the checkpoint complete.
func WriteMetadata(ctx context.Context, st Storage, loc Location, md *checkpointpb.Metadata) (Written, error) {
	b, err := EncodeMetadata(md)
	if err != nil {
		return Written{}, fmt.Errorf("%s: %w", fileURI(st, loc.MetadataFile()), err)
	}
	return PutBytes(ctx, st, loc.MetadataFile(), b)
}

// ReadMetadata reads and checks the metadata file of loc. A missing file is
// an fs.ErrNotExist error; see DecodeMetadata for the others.
func ReadMetadata(ctx context.Context, st Storage, loc Location) (*checkpointpb.Metadata, error) {
	name := loc.MetadataFile()
	f, err := st.Open(ctx, name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if f.Size() > maxMetadataSize {
		return nil, fmt.Errorf("checkpoint metadata %s: %w: %d bytes, more than the %d a metadata file may have", fileURI(st, name), ErrCorrupt, f.Size(), maxMetadataSize)
	}
	data := make([]byte, f.Size())
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, fmt.Errorf("reading checkpoint metadata %s: %w", fileURI(st, name), err)
	}
	return DecodeMetadata(fileURI(st, name), data)
}

// ValidateMetadata checks what the metadata format cannot express: the
// kind is set; operators are sorted by uid without duplicates; parallelism
// and max parallelism are in range; subtasks are sorted, in range, and own
// the key groups keygroup.RangeForOperator assigns them (or none); every
// state handle holds inline bytes or a file with a clean relative path; a
// savepoint names only files in its own directory.
func ValidateMetadata(md *checkpointpb.Metadata) error {
	if md == nil {
		return errors.New("no metadata")
	}
	if md.GetJobId() == "" {
		return errors.New("no job ID")
	}
	if md.GetCheckpointId() < 0 {
		return fmt.Errorf("negative checkpoint ID %d", md.GetCheckpointId())
	}
	savepoint := false
	switch md.GetKind() {
	case checkpointpb.Kind_CHECKPOINT:
		if md.GetSavepointFormat() != checkpointpb.SavepointFormat_SAVEPOINT_FORMAT_UNSPECIFIED {
			return fmt.Errorf("a checkpoint has a savepoint format (%v)", md.GetSavepointFormat())
		}
	case checkpointpb.Kind_SAVEPOINT:
		savepoint = true
		switch md.GetSavepointFormat() {
		case checkpointpb.SavepointFormat_CANONICAL, checkpointpb.SavepointFormat_NATIVE:
		default:
			return fmt.Errorf("savepoint format %v is not canonical or native", md.GetSavepointFormat())
		}
	default:
		return fmt.Errorf("kind %v is neither checkpoint nor savepoint", md.GetKind())
	}
	for i, op := range md.GetOperators() {
		if op.GetUid() == "" {
			return fmt.Errorf("operator %d has no uid", i)
		}
		if i > 0 && md.Operators[i-1].GetUid() >= op.GetUid() {
			return fmt.Errorf("operators not sorted by uid or uid %q repeated", op.GetUid())
		}
		if err := validateOperator(op, savepoint); err != nil {
			return fmt.Errorf("operator %q: %w", op.GetUid(), err)
		}
	}
	return nil
}

func validateOperator(op *checkpointpb.OperatorState, savepoint bool) error {
	p, maxP := int(op.GetParallelism()), int(op.GetMaxParallelism())
	if err := keygroup.CheckParallelism(p, maxP); err != nil {
		return err
	}
	for i, st := range op.GetSubtasks() {
		idx := int(st.GetSubtask())
		if idx < 0 || idx >= p {
			return fmt.Errorf("subtask %d outside [0, %d)", idx, p)
		}
		if i > 0 && op.Subtasks[i-1].GetSubtask() >= st.GetSubtask() {
			return fmt.Errorf("subtasks not sorted or subtask %d repeated", idx)
		}
		if err := validateSubtask(st, p, maxP, savepoint); err != nil {
			return fmt.Errorf("subtask %d: %w", idx, err)
		}
	}
	return nil
}

func validateSubtask(st *checkpointpb.SubtaskState, p, maxP int, savepoint bool) error {
	r := keygroup.Range{Start: int(st.GetKeyGroupStart()), End: int(st.GetKeyGroupEnd())}
	if !r.Empty() {
		if want := keygroup.RangeForOperator(maxP, p, int(st.GetSubtask())); r != want {
			return fmt.Errorf("key groups %v, but subtask %d of %d with max parallelism %d owns %v", r, st.GetSubtask(), p, maxP, want)
		}
	} else if len(st.GetKeyedState()) > 0 || st.GetNativeKeyedState() != nil {
		return errors.New("keyed state without key groups")
	}
	for i, h := range st.GetKeyedState() {
		if err := validateStateHandle(h, savepoint); err != nil {
			return fmt.Errorf("keyed state %d: %w", i, err)
		}
	}
	for i, e := range st.GetOperatorState() {
		if e.GetName() == "" {
			return fmt.Errorf("operator state %d has no name", i)
		}
		switch e.GetDistribution() {
		case checkpointpb.Distribution_SPLIT, checkpointpb.Distribution_UNION, checkpointpb.Distribution_BROADCAST:
		default:
			return fmt.Errorf("operator state %q: distribution %v is not split, union or broadcast", e.GetName(), e.GetDistribution())
		}
		if err := validateStateHandle(e.GetState(), savepoint); err != nil {
			return fmt.Errorf("operator state %q: %w", e.GetName(), err)
		}
	}
	if n := st.GetNativeKeyedState(); n != nil {
		if n.GetBackend() == "" {
			return errors.New("native keyed state names no backend")
		}
		sharedScope := checkpointpb.Scope_SHARED
		if savepoint {
			sharedScope = checkpointpb.Scope_EXCLUSIVE
		}
		names := map[string]bool{}
		for _, group := range []struct {
			what  string
			files []*checkpointpb.BackendFile
			scope checkpointpb.Scope
		}{{"shared", n.GetSharedFiles(), sharedScope}, {"private", n.GetPrivateFiles(), checkpointpb.Scope_EXCLUSIVE}} {
			for _, f := range group.files {
				if f.GetName() == "" || strings.Contains(f.GetName(), "/") || CheckName(f.GetName()) != nil {
					return fmt.Errorf("native %s file name %q is not a base name", group.what, f.GetName())
				}
				if names[f.GetName()] {
					return fmt.Errorf("native file %q named twice", f.GetName())
				}
				names[f.GetName()] = true
				if err := validateFileHandle(f.GetFile(), savepoint); err != nil {
					return fmt.Errorf("native %s file %q: %w", group.what, f.GetName(), err)
				}
				if f.GetFile().GetScope() != group.scope {
					return fmt.Errorf("native %s file %q is in scope %v, want %v", group.what, f.GetName(), f.GetFile().GetScope(), group.scope)
				}
			}
		}
	}
	return nil
}

func validateStateHandle(h *checkpointpb.StateHandle, savepoint bool) error {
	switch x := h.GetHandle().(type) {
	case *checkpointpb.StateHandle_Inline:
		return nil
	case *checkpointpb.StateHandle_File:
		return validateFileHandle(x.File, savepoint)
	}
	return errors.New("state handle holds neither inline bytes nor a file")
}

func validateFileHandle(h *checkpointpb.FileHandle, savepoint bool) error {
	if h == nil {
		return errors.New("missing file handle")
	}
	if err := CheckName(h.GetPath()); err != nil {
		return err
	}
	if h.GetSize() < 0 {
		return fmt.Errorf("file %q has negative size %d", h.GetPath(), h.GetSize())
	}
	switch h.GetScope() {
	case checkpointpb.Scope_EXCLUSIVE:
		if h.GetPath() == MetadataName {
			return fmt.Errorf("file handle names the metadata file %q itself", MetadataName)
		}
	case checkpointpb.Scope_SHARED, checkpointpb.Scope_TASK_OWNED:
		if savepoint {
			return fmt.Errorf("file %q is in scope %v, but a savepoint must be self-contained (exclusive scope only)", h.GetPath(), h.GetScope())
		}
	default:
		return fmt.Errorf("file %q has unknown scope %v", h.GetPath(), h.GetScope())
	}
	return nil
}

// References are the storage names of the files a checkpoint names, by
// scope, each sorted and without duplicates. The metadata file itself is
// not among them.
type References struct {
	Exclusive []string
	Shared    []string
	TaskOwned []string
}

// ReferencedFiles returns the files md names, resolved in loc.
func ReferencedFiles(loc Location, md *checkpointpb.Metadata) (References, error) {
	var refs References
	add := func(h *checkpointpb.FileHandle) error {
		name, err := loc.Resolve(h)
		if err != nil {
			return err
		}
		switch h.GetScope() {
		case checkpointpb.Scope_EXCLUSIVE:
			refs.Exclusive = append(refs.Exclusive, name)
		case checkpointpb.Scope_SHARED:
			refs.Shared = append(refs.Shared, name)
		case checkpointpb.Scope_TASK_OWNED:
			refs.TaskOwned = append(refs.TaskOwned, name)
		}
		return nil
	}
	addState := func(h *checkpointpb.StateHandle) error {
		if f := h.GetFile(); f != nil {
			return add(f)
		}
		return nil
	}
	for _, op := range md.GetOperators() {
		for _, st := range op.GetSubtasks() {
			for _, h := range st.GetKeyedState() {
				if err := addState(h); err != nil {
					return References{}, err
				}
			}
			for _, e := range st.GetOperatorState() {
				if err := addState(e.GetState()); err != nil {
					return References{}, err
				}
			}
			if n := st.GetNativeKeyedState(); n != nil {
				for _, f := range slices.Concat(n.GetSharedFiles(), n.GetPrivateFiles()) {
					if err := add(f.GetFile()); err != nil {
						return References{}, err
					}
				}
			}
		}
	}
	for _, s := range []*[]string{&refs.Exclusive, &refs.Shared, &refs.TaskOwned} {
		slices.Sort(*s)
		*s = slices.Compact(*s)
	}
	return refs, nil
}

// FileHandleOf returns the handle of a file written with Put: path is its
// name relative to the scope's directory.
func FileHandleOf(scope checkpointpb.Scope, path string, w Written) *checkpointpb.FileHandle {
	return &checkpointpb.FileHandle{Scope: scope, Path: path, Size: w.Size, Crc32C: w.CRC32C}
}

// OpenState opens the state h holds: its inline bytes, or its file in loc.
// A file whose size differs from the handle's is an ErrCorrupt error; the
// contents are checked by the reader of the format (keyed state blocks
// carry their own checksums) or by Fetch.
func OpenState(ctx context.Context, st Storage, loc Location, h *checkpointpb.StateHandle) (File, error) {
	switch x := h.GetHandle().(type) {
	case *checkpointpb.StateHandle_Inline:
		return bytesFile{bytes.NewReader(x.Inline)}, nil
	case *checkpointpb.StateHandle_File:
		name, err := loc.Resolve(x.File)
		if err != nil {
			return nil, err
		}
		f, err := st.Open(ctx, name)
		if err != nil {
			return nil, err
		}
		if f.Size() != x.File.GetSize() {
			f.Close()
			return nil, fmt.Errorf("%s: %w: the file has %d bytes but the checkpoint metadata says %d", fileURI(st, name), ErrCorrupt, f.Size(), x.File.GetSize())
		}
		return f, nil
	}
	return nil, errors.New("state handle holds neither inline bytes nor a file")
}

type bytesFile struct{ *bytes.Reader }

func (bytesFile) Close() error { return nil }
