package codec_test

import (
	"fmt"

	"github.com/weirstream/weir/internal/codec"
)

type Bid struct {
	Auction, Bidder, Price int64
	Channel, URL           string
	DateTime               int64
	Extra                  string
}

func ExampleFor() {
	c := codec.MustFor[Bid]()
	b := c.Append(nil, Bid{Auction: 1, Bidder: -1, Price: 300, Channel: "ch", DateTime: 1 << 40, Extra: "x"})
	fmt.Printf("%x\n", b)

	bid, n, err := c.Decode(b)
	fmt.Println(bid.Price, bid.Channel, n, err)
	// Output:
	// 0201d804026368008080808080400178
	// 300 ch 16 <nil>
}

func ExampleFor_unsupported() {
	type Event struct {
		Name    string
		Handler func(int)
	}
	_, err := codec.For[Event]()
	fmt.Println(err)
	// Output:
	// codec: type codec_test.Event field .Handler is a func (func(int)); record and key types must be plain data (numbers, strings, slices, maps, structs, pointers) or implement encoding.BinaryMarshaler
}
