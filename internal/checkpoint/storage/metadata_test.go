package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weirstream/weir/internal/keygroup"
	"github.com/weirstream/weir/internal/pb/checkpointpb"
)

const testJobID = "0123456789abcdef0123456789abcdef"

func fileState(scope checkpointpb.Scope, path string, size int64) *checkpointpb.StateHandle {
	return &checkpointpb.StateHandle{Handle: &checkpointpb.StateHandle_File{File: &checkpointpb.FileHandle{Scope: scope, Path: path, Size: size, Crc32C: 0xdeadbeef}}}
}

func inlineState(b []byte) *checkpointpb.StateHandle {
	return &checkpointpb.StateHandle{Handle: &checkpointpb.StateHandle_Inline{Inline: b}}
}

// sampleMetadata is a checkpoint with every kind of state: a keyed
// operator with canonical keyed state and operator state, and one with
// native (Pebble) state in shared and private files.
func sampleMetadata(id int64) *checkpointpb.Metadata {
	r0 := keygroup.RangeForOperator(128, 2, 0)
	r1 := keygroup.RangeForOperator(128, 2, 1)
	return &checkpointpb.Metadata{
		JobId: testJobID, CheckpointId: id, Kind: checkpointpb.Kind_CHECKPOINT,
		TriggerTimestampMillis: 1700000000000, CompletedTimestampMillis: 1700000000500,
		Properties: map[string]string{"state.backend.type": "pebble"},
		Operators: []*checkpointpb.OperatorState{
			{Uid: "count", Parallelism: 2, MaxParallelism: 128, Subtasks: []*checkpointpb.SubtaskState{
				{Subtask: 0, KeyGroupStart: int32(r0.Start), KeyGroupEnd: int32(r0.End),
					KeyedState: []*checkpointpb.StateHandle{fileState(checkpointpb.Scope_EXCLUSIVE, "count-0.keyed", 100)}},
				{Subtask: 1, KeyGroupStart: int32(r1.Start), KeyGroupEnd: int32(r1.End),
					KeyedState: []*checkpointpb.StateHandle{inlineState([]byte("small"))}},
			}},
			{Uid: "source", Parallelism: 1, MaxParallelism: 128, Subtasks: []*checkpointpb.SubtaskState{
				{Subtask: 0, KeyGroupStart: 0, KeyGroupEnd: -1, OperatorState: []*checkpointpb.OperatorStateEntry{
					{Name: "splits", Distribution: checkpointpb.Distribution_SPLIT, State: inlineState([]byte{1, 2, 3})},
					{Name: "pending-txns", Distribution: checkpointpb.Distribution_UNION, State: fileState(checkpointpb.Scope_TASK_OWNED, "sink/txn-7", 9)},
				}},
			}},
			{Uid: "window", Parallelism: 1, MaxParallelism: 128, Subtasks: []*checkpointpb.SubtaskState{
				{Subtask: 0, KeyGroupStart: 0, KeyGroupEnd: 127, NativeKeyedState: &checkpointpb.NativeKeyedState{
					Backend: "pebble",
					SharedFiles: []*checkpointpb.BackendFile{
						{Name: "000007.sst", Id: "aa/000007.sst", File: &checkpointpb.FileHandle{Scope: checkpointpb.Scope_SHARED, Path: "1111-000007.sst", Size: 4096}},
						{Name: "000009.sst", Id: "aa/000009.sst", File: &checkpointpb.FileHandle{Scope: checkpointpb.Scope_SHARED, Path: "2222-000009.sst", Size: 8192}},
					},
					PrivateFiles: []*checkpointpb.BackendFile{
						{Name: "MANIFEST-000001", File: &checkpointpb.FileHandle{Scope: checkpointpb.Scope_EXCLUSIVE, Path: "window-0/MANIFEST-000001", Size: 300}},
					},
				}},
			}},
		},
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	md := sampleMetadata(7)
	b, err := EncodeMetadata(md)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMetadata("test", b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, md) {
		t.Fatalf("round trip changed the metadata:\n got %v\nwant %v", got, md)
	}
	// Deterministic: the same metadata gives the same bytes.
	b2, _ := EncodeMetadata(got)
	if string(b) != string(b2) {
		t.Fatal("encoding is not deterministic")
	}
}

func TestMetadataOnStorage(t *testing.T) {
	forEachBackend(t, func(t *testing.T, st Storage) {
		ctx := context.Background()
		loc := CheckpointLocation(testJobID, 7)
		if _, err := ReadMetadata(ctx, st, loc); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("missing metadata: %v", err)
		}
		if _, err := WriteMetadata(ctx, st, loc, sampleMetadata(7)); err != nil {
			t.Fatal(err)
		}
		got, err := ReadMetadata(ctx, st, loc)
		if err != nil || !proto.Equal(got, sampleMetadata(7)) {
			t.Fatalf("ReadMetadata = %v, %v", got, err)
		}
		// Damage it: the error names the file.
		b, _ := ReadAll(ctx, st, loc.MetadataFile())
		b[len(b)-1] ^= 0x40
		PutBytes(ctx, st, loc.MetadataFile(), b)
		_, err = ReadMetadata(ctx, st, loc)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), st.URI()+"/"+testJobID+"/chk-7/_metadata") {
			t.Fatalf("corrupt metadata: %v", err)
		}
	})
}

func TestDecodeMetadataErrors(t *testing.T) {
	good, err := EncodeMetadata(sampleMetadata(3))
	if err != nil {
		t.Fatal(err)
	}
	withVersion := func(v uint32) []byte {
		b := slices.Clone(good)
		binary.LittleEndian.PutUint32(b[8:], v)
		return b
	}
	reencode := func(mut func(*checkpointpb.Metadata)) []byte {
		md := sampleMetadata(3)
		mut(md)
		body, _ := proto.Marshal(md)
		b := slices.Clone(good[:metadataHeaderLen])
		binary.LittleEndian.PutUint64(b[12:], uint64(len(body)))
		binary.LittleEndian.PutUint32(b[20:], CRC32C(body))
		return append(b, body...)
	}
	flip := func(i int) []byte {
		b := slices.Clone(good)
		b[i] ^= 1
		return b
	}
	for _, tc := range []struct {
		name  string
		data  []byte
		kind  error
		words string
	}{
		{"empty", nil, ErrCorrupt, "truncated"},
		{"magic prefix", good[:4], ErrCorrupt, "truncated"},
		{"wrong magic", []byte("PK\x03\x04 this is a zip file, not metadata"), ErrCorrupt, "wrong magic number"},
		{"header only", good[:metadataHeaderLen-1], ErrCorrupt, "truncated"},
		{"truncated body", good[:len(good)-5], ErrCorrupt, "truncated: the header announces"},
		{"trailing bytes", append(slices.Clone(good), 0), ErrCorrupt, "unexpected bytes after"},
		{"flipped body bit", flip(len(good) - 3), ErrCorrupt, "checksum mismatch"},
		{"flipped checksum", flip(21), ErrCorrupt, "checksum mismatch"},
		{"version 0", withVersion(0), ErrCorrupt, "format version 0"},
		{"future version", withVersion(2), ErrNewerVersion, "upgrade Weir"},
		{"no job id", reencode(func(m *checkpointpb.Metadata) { m.JobId = "" }), ErrCorrupt, "no job ID"},
		{"no kind", reencode(func(m *checkpointpb.Metadata) { m.Kind = 0 }), ErrCorrupt, "neither checkpoint nor savepoint"},
		{"unsorted operators", reencode(func(m *checkpointpb.Metadata) { m.Operators[0], m.Operators[1] = m.Operators[1], m.Operators[0] }), ErrCorrupt, "not sorted"},
		{"escaping path", reencode(func(m *checkpointpb.Metadata) {
			m.Operators[0].Subtasks[0].KeyedState[0].GetFile().Path = "../../other-job/chk-1/x"
		}), ErrCorrupt, "bad file name"},
		{"wrong key groups", reencode(func(m *checkpointpb.Metadata) { m.Operators[0].Subtasks[0].KeyGroupEnd++ }), ErrCorrupt, "owns"},
		{"subtask out of range", reencode(func(m *checkpointpb.Metadata) { m.Operators[1].Subtasks[0].Subtask = 1 }), ErrCorrupt, "outside [0, 1)"},
		{"parallelism above max", reencode(func(m *checkpointpb.Metadata) { m.Operators[1].MaxParallelism = 0 }), ErrCorrupt, "max parallelism"},
		{"empty handle", reencode(func(m *checkpointpb.Metadata) {
			m.Operators[0].Subtasks[1].KeyedState[0] = &checkpointpb.StateHandle{}
		}), ErrCorrupt, "neither inline bytes nor a file"},
		{"handle names _metadata", reencode(func(m *checkpointpb.Metadata) {
			m.Operators[0].Subtasks[0].KeyedState[0].GetFile().Path = MetadataName
		}), ErrCorrupt, "metadata file"},
		{"shared in savepoint", reencode(func(m *checkpointpb.Metadata) {
			m.Kind, m.SavepointFormat = checkpointpb.Kind_SAVEPOINT, checkpointpb.SavepointFormat_NATIVE
		}), ErrCorrupt, "self-contained"},
		{"private file in shared scope", reencode(func(m *checkpointpb.Metadata) {
			m.Operators[2].Subtasks[0].NativeKeyedState.PrivateFiles[0].File.Scope = checkpointpb.Scope_SHARED
		}), ErrCorrupt, "want EXCLUSIVE"},
		{"garbage body", func() []byte {
			body := []byte{0xff, 0xff, 0xff}
			b := slices.Clone(good[:metadataHeaderLen])
			binary.LittleEndian.PutUint64(b[12:], uint64(len(body)))
			binary.LittleEndian.PutUint32(b[20:], CRC32C(body))
			return append(b, body...)
		}(), ErrCorrupt, "undecodable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeMetadata("s3://b/job/chk-3/_metadata", tc.data)
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.words) || !strings.Contains(err.Error(), "s3://b/job/chk-3/_metadata") {
				t.Fatalf("error %v; want %v naming the file and saying %q", err, tc.kind, tc.words)
			}
		})
	}
}

func TestReferencedFiles(t *testing.T) {
	refs, err := ReferencedFiles(CheckpointLocation(testJobID, 7), sampleMetadata(7))
	if err != nil {
		t.Fatal(err)
	}
	j := testJobID
	want := References{
		Exclusive: []string{j + "/chk-7/count-0.keyed", j + "/chk-7/window-0/MANIFEST-000001"},
		Shared:    []string{j + "/shared/1111-000007.sst", j + "/shared/2222-000009.sst"},
		TaskOwned: []string{j + "/taskowned/sink/txn-7"},
	}
	for _, c := range []struct {
		name      string
		got, want []string
	}{{"exclusive", refs.Exclusive, want.Exclusive}, {"shared", refs.Shared, want.Shared}, {"task-owned", refs.TaskOwned, want.TaskOwned}} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// A savepoint resolves everything inside its own directory.
	sp := &checkpointpb.Metadata{JobId: testJobID, CheckpointId: 9, Kind: checkpointpb.Kind_SAVEPOINT, SavepointFormat: checkpointpb.SavepointFormat_CANONICAL,
		Operators: []*checkpointpb.OperatorState{{Uid: "a", Parallelism: 1, MaxParallelism: 1, Subtasks: []*checkpointpb.SubtaskState{
			{KeyGroupStart: 0, KeyGroupEnd: 0, KeyedState: []*checkpointpb.StateHandle{fileState(checkpointpb.Scope_EXCLUSIVE, "a-0", 5)}}}}}}
	if err := ValidateMetadata(sp); err != nil {
		t.Fatal(err)
	}
	refs, err = ReferencedFiles(SavepointLocation(""), sp)
	if err != nil || !slices.Equal(refs.Exclusive, []string{"a-0"}) {
		t.Fatalf("savepoint refs = %+v, %v", refs, err)
	}
}

func TestLayoutNames(t *testing.T) {
	if got := CheckpointDir("j", 42); got != "j/chk-42" {
		t.Errorf("CheckpointDir = %q", got)
	}
	for name, want := range map[string]int64{"chk-0": 0, "chk-1": 1, "chk-123": 123} {
		if id, ok := ParseCheckpointDir(name); !ok || id != want {
			t.Errorf("ParseCheckpointDir(%q) = %d, %v", name, id, ok)
		}
	}
	for _, name := range []string{"chk-", "chk-01", "chk--1", "chk-1a", "shared", "taskowned", "chk-99999999999999999999"} {
		if _, ok := ParseCheckpointDir(name); ok {
			t.Errorf("ParseCheckpointDir(%q) accepted", name)
		}
	}
	sp := NewSavepointDirName(testJobID)
	if !strings.HasPrefix(sp, "savepoint-012345-") || len(sp) != len("savepoint-012345-")+12 || CheckName(sp) != nil {
		t.Errorf("NewSavepointDirName = %q", sp)
	}
	if sp == NewSavepointDirName(testJobID) {
		t.Error("two savepoint directories got the same name")
	}
	for _, hint := range []string{"000123.sst", "a/b", "..", ""} {
		if n := NewSharedName(hint); CheckName(n) != nil || strings.Contains(n, "/") {
			t.Errorf("NewSharedName(%q) = %q", hint, n)
		}
	}
}

// FuzzReadMetadata checks that no input makes DecodeMetadata panic, that
// every error is ErrCorrupt or ErrNewerVersion, and that what it accepts
// survives a round trip.
func FuzzReadMetadata(f *testing.F) {
	good, _ := EncodeMetadata(sampleMetadata(3))
	f.Add(good)
	f.Add(good[:30])
	f.Add([]byte{})
	small, _ := EncodeMetadata(&checkpointpb.Metadata{JobId: "j", Kind: checkpointpb.Kind_CHECKPOINT})
	f.Add(small)
	f.Add([]byte{0x0a, 0x01, 'j', 0x18, 0x01, 0x3a, 0x06, 0x0a, 0x01, 'a', 0x10, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		checkMetadataInput(t, data)
		// The checksum stops most mutations at the door; also wrap the
		// input in a valid envelope, to reach the decoding behind it.
		env := slices.Clone(metadataMagic[:])
		env = binary.LittleEndian.AppendUint32(env, MetadataVersion)
		env = binary.LittleEndian.AppendUint64(env, uint64(len(data)))
		env = binary.LittleEndian.AppendUint32(env, CRC32C(data))
		checkMetadataInput(t, append(env, data...))
	})
}

func checkMetadataInput(t *testing.T, data []byte) {
	md, err := DecodeMetadata("fuzz", data)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNewerVersion) {
			t.Fatalf("error is neither ErrCorrupt nor ErrNewerVersion: %v", err)
		}
		return
	}
	b, err := EncodeMetadata(md)
	if err != nil {
		t.Fatalf("accepted metadata does not encode: %v", err)
	}
	md2, err := DecodeMetadata("fuzz", b)
	if err != nil || !proto.Equal(md, md2) {
		t.Fatalf("round trip failed: %v", err)
	}
	if _, err := ReferencedFiles(CheckpointLocation("j", md.GetCheckpointId()), md); err != nil {
		t.Fatalf("accepted metadata has unresolvable files: %v", err)
	}
}
