"""Wire formats: framing, envelopes and signatures, the secure channel, codecs. No I/O."""
