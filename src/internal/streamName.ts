import { createHash } from "node:crypto"

/** The text before the first `-`, or the whole name when there is none. */
export const category = (streamName: string): string => {
  const dash = streamName.indexOf("-")
  return dash === -1 ? streamName : streamName.slice(0, dash)
}

/** Everything after the first `-`, or `undefined` for a name that is only a category. */
export const id = (streamName: string): string | undefined => {
  const dash = streamName.indexOf("-")
  return dash === -1 ? undefined : streamName.slice(dash + 1)
}

/** The id cut at the first `+`: the part that decides a stream's consumer-group member. */
export const cardinalId = (streamName: string): string | undefined => {
  const streamId = id(streamName)
  if (streamId === undefined) return undefined
  const plus = streamId.indexOf("+")
  return plus === -1 ? streamId : streamId.slice(0, plus)
}

/** True when the name has no id part. */
export const isCategory = (streamName: string): boolean => !streamName.includes("-")

/**
 * The consumer-group hash of `category.get` (Message DB's rule): the first 8 bytes of md5(cardinal id) as a
 * signed big-endian 64-bit integer, made non-negative. The absolute value, not an unsigned reading, is what the
 * server compares, so the two must not be confused.
 */
export const groupHash = (streamName: string): bigint | undefined => {
  const cid = cardinalId(streamName)
  if (cid === undefined) return undefined
  const digest = createHash("md5").update(cid, "utf8").digest()
  const signed = digest.readBigInt64BE(0)
  return signed < 0n ? -signed : signed
}

/**
 * The member of a group of `size` that owns the stream, or `undefined` when no member does (a name without `-`).
 */
export const groupMember = (streamName: string, size: number): number | undefined => {
  const hash = groupHash(streamName)
  return hash === undefined ? undefined : Number(hash % BigInt(size))
}
