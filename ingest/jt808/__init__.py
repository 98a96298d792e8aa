"""JT/T 808 (交通运输部 road-transport terminal protocol, 2011/2013/2019 editions), the TCP
protocol most location terminals sold in China speak: a pure codec, no I/O.

- `ingest.jt808.frame`: 0x7E frames, escaping, checksum, the message header (2013 and
  2019 layouts), split packets, a stream reader for TCP bytes and `encode`.
- `ingest.jt808.messages`: terminal messages, decoded (and built, for the simulator).
- `ingest.jt808.commands`: platform messages, built (and read back, for the simulator).
- `ingest.jt808.uplink`: a decoded location as fencewatch's own spec 4.1 message.
"""
