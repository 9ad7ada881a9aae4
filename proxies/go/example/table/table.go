// Package table is the example proxy's read-only table: fixed-size
// records sorted by key, laid out flat so that it can live in shared
// memory and be searched in place, with no decoding and no pointers.
//
// A record is RecordBytes long: the key as 8 bytes big-endian, then a
// 24-byte value. Generated tables have the keys key(i) = 8i + (mix(i) mod
// 8), strictly increasing, so about one integer in eight is a key and a
// lookup can miss; the value is derived from the key, so anyone can check
// an answer without the table.
package table

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"sort"
)

// Record layout.
const (
	KeyBytes    = 8
	ValueBytes  = 24
	RecordBytes = KeyBytes + ValueBytes
)

// mix is splitmix64's finaliser: a cheap, well-spread function of i.
func mix(i uint64) uint64 {
	i += 0x9e3779b97f4a7c15
	i = (i ^ (i >> 30)) * 0xbf58476d1ce4e5b9
	i = (i ^ (i >> 27)) * 0x94d049bb133111eb
	return i ^ (i >> 31)
}

// Key is the key of record i of a generated table.
func Key(i uint64) uint64 { return 8*i + mix(i)%8 }

// Value is the value a generated table holds for key.
func Value(key uint64) [ValueBytes]byte {
	var v [ValueBytes]byte
	binary.BigEndian.PutUint64(v[0:], mix(key))
	binary.BigEndian.PutUint64(v[8:], mix(key^0x5555555555555555))
	binary.BigEndian.PutUint64(v[16:], mix(key^0xaaaaaaaaaaaaaaaa))
	return v
}

// Generate writes a table of n records to w.
func Generate(w io.Writer, n uint64) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	var rec [RecordBytes]byte
	for i := uint64(0); i < n; i++ {
		k := Key(i)
		binary.BigEndian.PutUint64(rec[:KeyBytes], k)
		v := Value(k)
		copy(rec[KeyBytes:], v[:])
		if _, err := bw.Write(rec[:]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Fill writes a table of len(b)/RecordBytes records into b, for a process
// that keeps the table in its own heap.
func Fill(b []byte) {
	for i := uint64(0); i < uint64(len(b)/RecordBytes); i++ {
		rec := b[i*RecordBytes : (i+1)*RecordBytes]
		k := Key(i)
		binary.BigEndian.PutUint64(rec[:KeyBytes], k)
		v := Value(k)
		copy(rec[KeyBytes:], v[:])
	}
}

// Check says whether t has a whole number of records.
func Check(t []byte) error {
	if len(t)%RecordBytes != 0 {
		return fmt.Errorf("table of %d bytes is not a whole number of %d-byte records", len(t), RecordBytes)
	}
	return nil
}

// Len is the number of records in t.
func Len(t []byte) int { return len(t) / RecordBytes }

// KeyAt is the key of record i.
func KeyAt(t []byte, i int) uint64 {
	return binary.BigEndian.Uint64(t[i*RecordBytes:])
}

// Lookup finds key by binary search, touching log2(n) records.
func Lookup(t []byte, key uint64) (value []byte, ok bool) {
	n := Len(t)
	i := sort.Search(n, func(i int) bool { return KeyAt(t, i) >= key })
	if i == n || KeyAt(t, i) != key {
		return nil, false
	}
	off := i*RecordBytes + KeyBytes
	return t[off : off+ValueBytes : off+ValueBytes], true
}

// Sum reads every byte of t (eight at a time) and returns a checksum, so
// a caller can prove it read the whole table.
func Sum(t []byte) uint64 {
	var s uint64
	i := 0
	for ; i+8 <= len(t); i += 8 {
		s = s*31 + binary.LittleEndian.Uint64(t[i:])
	}
	for ; i < len(t); i++ {
		s = s*31 + uint64(t[i])
	}
	return s
}
