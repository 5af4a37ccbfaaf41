/**
 * Time as the Postgres backend keeps it: microseconds, printed with Go's RFC3339Nano (fraction trimmed of trailing
 * zeros, none when it is zero).
 */

/**
 * Microseconds since the Unix epoch from the wall clock. The server stamps messages with its own clock, whatever
 * clock its clients run on (a client under `TestClock` still sees real times), so this is not Effect's `Clock`.
 */
export const wallClockMicros = (): number => Math.floor((performance.timeOrigin + performance.now()) * 1000)

const seconds = (micros: number): string => new Date(Math.floor(micros / 1_000_000) * 1000).toISOString().slice(0, 19)

/** `2024-01-15T10:30:00.123456Z`, or `2024-01-15T10:30:00Z` when the fraction is zero. */
export const rfc3339Nano = (micros: number): string => {
  const fraction = String(((micros % 1_000_000) + 1_000_000) % 1_000_000).padStart(6, "0").replace(/0+$/, "")
  return fraction === "" ? `${seconds(micros)}Z` : `${seconds(micros)}.${fraction}Z`
}

/** `2024-01-15T10:30:00Z`: whole seconds, as `ns.streams` and namespace creation times are printed. */
export const rfc3339 = (micros: number): string => `${seconds(micros)}Z`
