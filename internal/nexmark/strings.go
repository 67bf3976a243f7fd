package nexmark

import (
	"math/bits"
	"strconv"
	"strings"
	"sync"
)

// Value lists of the suite's PersonGenerator and BidGenerator.
var (
	usStates   = []string{"AZ", "CA", "ID", "OR", "WA", "WY"}
	usCities   = []string{"Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland", "Bend", "Redmond", "Seattle", "Kent", "Cheyenne"}
	firstNames = []string{"Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter"}
	lastNames  = []string{"Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"}
	hotChannel = []string{"Google", "Facebook", "Baidu", "Apple"}
)

const (
	// minStringLength is the suite's StringsGenerator.MIN_STRING_LENGTH.
	minStringLength = 3
	// numChannels is the suite's BidGenerator.CHANNELS_NUMBER.
	numChannels = 10_000
	// hotChannelsRatio: a bid comes from a hot channel with probability
	// 1 - 1/hotChannelsRatio.
	hotChannelsRatio = 2
	// poolSize is the length of the precomputed random text that strings
	// are cut from; a power of two well above the longest default extra.
	poolSize = 1 << 16
	// tablesSeed fixes the precomputed text, URLs and channels, so they are
	// the same in every process.
	tablesSeed = 0x6e65786d61726b // "nexmark"
)

// tables holds everything precomputed so that the hot path cuts strings
// instead of building them.
type tables struct {
	// letters is random 'a'..'z' (the suite's nextExactString).
	letters string
	// text is random 'a'..'z' with a space in 1 of 13 places (the suite's
	// nextString).
	text string
	// names holds every "First Last" combination, index first*len(lastNames)+last.
	names []string
	// hotURLs[i] is the URL of hotChannel[i].
	hotURLs []string
	// channels[i] and channelURLs[i] are "channel-i" and its URL.
	channels    []string
	channelURLs []string
}

var (
	tablesOnce sync.Once
	tbl        *tables
)

// loadTables builds the tables on first use (about a millisecond), so that
// importing the package costs nothing.
func loadTables() *tables {
	tablesOnce.Do(func() { tbl = buildTables() })
	return tbl
}

func buildTables() *tables {
	r := rng{state: tablesSeed}
	t := &tables{}

	var b strings.Builder
	b.Grow(poolSize)
	for range poolSize {
		b.WriteByte(byte('a' + r.intn(26)))
	}
	t.letters = b.String()

	b = strings.Builder{}
	b.Grow(poolSize)
	for range poolSize {
		if r.intn(13) == 0 {
			b.WriteByte(' ')
		} else {
			b.WriteByte(byte('a' + r.intn(26)))
		}
	}
	t.text = b.String()

	for _, first := range firstNames {
		for _, last := range lastNames {
			t.names = append(t.names, first+" "+last)
		}
	}

	for range hotChannel {
		t.hotURLs = append(t.hotURLs, baseURL(&r))
	}
	t.channels = make([]string, numChannels)
	t.channelURLs = make([]string, numChannels)
	for i := range numChannels {
		t.channels[i] = "channel-" + strconv.Itoa(i)
		url := baseURL(&r)
		// As the suite: 9 in 10 channel URLs carry the channel id, written
		// as Java's Math.abs(Integer.reverse(i)).
		if r.intn(10) > 0 {
			url += "&channel_id=" + strconv.FormatInt(int64(javaAbs32(int32(bits.Reverse32(uint32(i))))), 10)
		}
		t.channelURLs[i] = url
	}
	return t
}

// javaAbs32 is Java's Math.abs(int): MinInt32 stays negative.
func javaAbs32(v int32) int32 {
	if v < 0 {
		return -v // wraps for MinInt32, as Java does
	}
	return v
}

// baseURL is the suite's BidGenerator.getBaseUrl.
func baseURL(r *rng) string {
	return "https://www.nexmark.com/" +
		slowString(r, 5, '_') + "/" +
		slowString(r, 5, '_') + "/" +
		slowString(r, 5, '_') + "/" +
		"item.htm?query=1"
}

// slowString is the suite's nextString(random, maxLength, special), built
// character by character; only used to build the tables.
func slowString(r *rng, maxLength int, special byte) string {
	n := minStringLength + r.intn(maxLength-minStringLength)
	b := make([]byte, n)
	for i := range b {
		if r.intn(13) == 0 {
			b[i] = special
		} else {
			b[i] = byte('a' + r.intn(26))
		}
	}
	return javaTrim(string(b))
}

// javaTrim is Java's String.trim for the ASCII text used here.
func javaTrim(s string) string {
	for len(s) > 0 && s[0] <= ' ' {
		s = s[1:]
	}
	for len(s) > 0 && s[len(s)-1] <= ' ' {
		s = s[:len(s)-1]
	}
	return s
}

// nextString is the suite's nextString(random, maxLength): a length drawn
// from [3, maxLength), letters with a space in 1 of 13 places, trimmed. It
// cuts the text from the pool instead of drawing each character.
func (t *tables) nextString(r *rng, maxLength int) string {
	n := minStringLength + r.intn(maxLength-minStringLength)
	off := r.intn(len(t.text) - n)
	return javaTrim(t.text[off : off+n])
}

// nextExactString is the suite's nextExactString: n random letters.
func (t *tables) nextExactString(r *rng, n int) string {
	if n <= len(t.letters)/4 {
		off := r.intn(len(t.letters) - n)
		return t.letters[off : off+n]
	}
	// Only for average sizes far above the suite's; allocates.
	var b strings.Builder
	b.Grow(n)
	for b.Len() < n {
		chunk := min(n-b.Len(), len(t.letters)/4)
		off := r.intn(len(t.letters) - chunk)
		b.WriteString(t.letters[off : off+chunk])
	}
	return b.String()
}

// nextExtra is the suite's nextExtra: padding whose length makes
// currentSize+len(extra) average desiredAverageSize, uniform within ±20%.
func (t *tables) nextExtra(r *rng, currentSize, desiredAverageSize int) string {
	if currentSize > desiredAverageSize {
		return ""
	}
	desired := desiredAverageSize - currentSize
	delta := (2*desired + 5) / 10 // Math.round(desired * 0.2)
	size := desired - delta
	if delta > 0 {
		size += r.intn(2 * delta)
	}
	return t.nextExactString(r, size)
}
