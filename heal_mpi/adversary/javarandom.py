"""java.util.Random, bit-exact: the LCG Lift draws its new hubs with (byzantine.md §2.4, §4 B2).

Decisions:
- The seed is any Python int; like Java's `new Random(long)`, only its low 48 bits matter
  after the scramble, so an unsigned 64-bit seed (Lift's SHA-256 prefix, §4 B1) gives the
  same stream as the same bits read as a signed Java long.
- Checked against OpenJDK 17 outputs (tests/test_adversary_javarandom.py), including the
  power-of-two and the rejection branches of `nextInt(bound)`.

Pure Python on purpose: Lift draws h (≈10) ids per distinct hub list, so speed is moot and
exact integer arithmetic is simpler than emulating 64-bit overflow in NumPy.
"""

from __future__ import annotations

_MULT = 0x5DEECE66D
_ADD = 0xB
_MASK48 = (1 << 48) - 1


def _signed(x: int, bits: int) -> int:
    """The low `bits` bits of x as a two's-complement integer (Java's narrowing casts)."""
    x &= (1 << bits) - 1
    return x - (1 << bits) if x >> (bits - 1) else x


class JavaRandom:
    """java.util.Random with Java's scramble, `next`, `nextInt` and `nextLong`.

    Args:
        seed: the Java `long` seed (any int; only its low 48 bits survive the scramble).
    """

    def __init__(self, seed: int):
        self._state = (int(seed) ^ _MULT) & _MASK48

    def next(self, bits: int) -> int:
        """Java's protected `next(bits)`: advance the LCG, return its top `bits` bits as an int."""
        self._state = (self._state * _MULT + _ADD) & _MASK48
        return _signed(self._state >> (48 - bits), 32)

    def next_int(self, n: int | None = None) -> int:
        """`nextInt()` (signed 32-bit) without n; `nextInt(n)`, uniform in [0, n), with n > 0."""
        if n is None:
            return self.next(32)
        if not 0 < n < 2**31:
            raise ValueError(f"bound must be in (0, 2**31), got {n}")
        if n & -n == n:  # power of two: the high bits, not the (weaker) low bits of the LCG
            return (n * self.next(31)) >> 31
        while True:  # reject the top partial block so every value is equally likely
            b = self.next(31)
            v = b % n
            if b - v + (n - 1) < 2**31:  # Java: `bits - val + (n-1) >= 0` without int overflow
                return v

    def next_long(self) -> int:
        """`nextLong()`: two `next(32)` calls combined as a signed 64-bit value."""
        return _signed((self.next(32) << 32) + self.next(32), 64)
