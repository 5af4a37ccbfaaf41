/**
 * The in-memory event store behind the in-process EventoDB server: namespaces with hashed tokens, and per namespace
 * the messages in global order plus indexes by stream and by category, so a read touches only what it returns and
 * a write is constant time. It keeps data only; the server's validation and answers live in `rpc.ts`.
 *
 * JavaScript runs one write at a time, which gives the atomic version check and insert that Postgres gets from its
 * category lock.
 */
import * as StreamName from "../streamName.js"
import { wallClockMicros } from "./clock.js"
import * as Json from "./json.js"
import * as Token from "./token.js"
import * as Uuid from "./uuid.js"

/** A stored message, with its JSON already in the server's canonical form. */
export interface Message {
  readonly id: string
  readonly streamName: string
  readonly type: string
  readonly position: number
  readonly globalPosition: number
  /** Canonical JSON text of the data object. */
  readonly data: string
  /** Canonical JSON text of the metadata object, or `null`. */
  readonly metadata: string
  readonly timeMicros: number
  /** The category of `metadata.correlationStreamName` as Postgres' `->>` reads it; null when absent. */
  readonly correlation: string | null
}

/** What a write to a stream or a category tells a subscriber. */
export interface Written {
  readonly stream: string
  readonly category: string
  readonly position: number
  readonly globalPosition: number
}

interface Stream {
  readonly name: string
  readonly messages: Array<Message>
  /** The consumer-group hash of the cardinal id, computed on first use; undefined for a name without `-`. */
  groupHash: bigint | undefined | null
}

interface Category {
  readonly messages: Array<Message>
  streams: number
}

/** One namespace: its registry row and its messages. */
export class Namespace {
  readonly all: Array<Message> = []
  readonly streams = new Map<string, Stream>()
  readonly categories = new Map<string, Category>()
  readonly ids = new Set<string>()
  readonly listeners = new Set<(written: Written) => void>()
  lastGlobalPosition = 0

  constructor(
    readonly id: string,
    readonly tokenHash: string,
    readonly schemaName: string,
    readonly description: string,
    /** Unix seconds: the registry keeps whole seconds. */
    readonly createdAt: number,
    readonly sequence: number
  ) {}
}

/** The outcome of a write, in the order the Postgres backend checks them. */
export type WriteOutcome =
  | { readonly _tag: "Written"; readonly position: number; readonly globalPosition: number }
  | { readonly _tag: "InvalidId"; readonly error: string }
  | { readonly _tag: "UuidSyntax"; readonly id: string }
  | { readonly _tag: "NulByte" }
  | { readonly _tag: "NulCharacter" }
  | { readonly _tag: "VersionConflict"; readonly actual: number }
  | { readonly _tag: "DuplicateId" }

/** A write as the RPC layer hands it over, already validated for shape. */
export interface WriteRequest {
  readonly streamName: string
  readonly type: string
  readonly data: Json.JsonObject
  readonly metadata: Json.JsonObject | undefined
  /** A client-supplied id; empty or absent means "generate one". */
  readonly id: string | undefined
  readonly expectedVersion: number | undefined
}

// Postgres schema names: `eventodb_` plus the id with every character outside [A-Za-z0-9_] replaced.
const schemaName = (id: string): string => `eventodb_${[...id].map((c) => /[A-Za-z0-9_]/.test(c) ? c : "_").join("")}`

// `metadata->>'correlationStreamName'` gives the text of any JSON value except null.
const correlationOf = (metadata: Json.JsonObject | undefined): string | null => {
  if (metadata === undefined || !Json.has(metadata, "correlationStreamName")) return null
  const value = metadata.correlationStreamName
  if (value === null) return null
  return StreamName.category(typeof value === "string" ? value : Json.encode(value))
}

/** First index in `messages` (sorted by global position) whose global position is at least `from`. */
export const firstAtOrAfter = (messages: ReadonlyArray<Message>, from: number): number => {
  let low = 0
  let high = messages.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (messages[middle]!.globalPosition < from) low = middle + 1
    else high = middle
  }
  return low
}

/** The in-memory store: every namespace, by id. */
export class MemoryStore {
  readonly namespaces = new Map<string, Namespace>()
  private sequence = 0

  constructor(readonly now: () => number = wallClockMicros) {}

  /** Registers a namespace; `undefined` when its id, or its Postgres schema name, is taken. */
  createNamespace(id: string, token: string, description: string): Namespace | undefined {
    const schema = schemaName(id)
    for (const existing of this.namespaces.values()) {
      if (existing.id === id || existing.schemaName === schema) return undefined
    }
    const namespace = new Namespace(
      id,
      Token.hash(token),
      schema,
      description,
      Math.floor(this.now() / 1_000_000),
      this.sequence++
    )
    this.namespaces.set(id, namespace)
    return namespace
  }

  deleteNamespace(id: string): boolean {
    return this.namespaces.delete(id)
  }

  /** Writes one message, or says why not. Nothing changes unless the outcome is `Written`, except the gap below. */
  write(namespace: Namespace, request: WriteRequest): WriteOutcome {
    // The checks run in the Postgres backend's order: Go parses the id, Postgres binds the text parameters and
    // casts the JSONB ones, `write_message` checks the version, and the insert casts the id.
    const custom = request.id === undefined || request.id === "" ? undefined : Uuid.check(request.id)
    if (custom?._tag === "GoRejected") return { _tag: "InvalidId", error: custom.error }
    if (request.streamName.includes("\u0000") || request.type.includes("\u0000")) return { _tag: "NulByte" }
    if (Json.containsNul(request.data) || Json.containsNul(request.metadata)) return { _tag: "NulCharacter" }

    const stream = this.streamOf(namespace, request.streamName)
    const version = stream === undefined ? -1 : stream.messages.length - 1
    if (request.expectedVersion !== undefined && request.expectedVersion !== version) {
      return { _tag: "VersionConflict", actual: version }
    }
    if (custom?._tag === "PostgresRejected") return { _tag: "UuidSyntax", id: request.id! }
    const id = custom?._tag === "Valid" ? custom.canonical : Uuid.v7(this.now() / 1000)

    // The global-position sequence is drawn before the unique index refuses a duplicate: Postgres leaves a gap.
    const globalPosition = ++namespace.lastGlobalPosition
    if (namespace.ids.has(id)) return { _tag: "DuplicateId" }

    const message: Message = {
      id,
      streamName: request.streamName,
      type: request.type,
      position: version + 1,
      globalPosition,
      data: Json.encode(request.data),
      metadata: request.metadata === undefined ? "null" : Json.encode(request.metadata),
      timeMicros: this.now(),
      correlation: correlationOf(request.metadata)
    }
    this.append(namespace, stream, message)
    return { _tag: "Written", position: message.position, globalPosition }
  }

  private append(namespace: Namespace, existing: Stream | undefined, message: Message): void {
    const categoryName = StreamName.category(message.streamName)
    let category = namespace.categories.get(categoryName)
    if (category === undefined) {
      category = { messages: [], streams: 0 }
      namespace.categories.set(categoryName, category)
    }
    let stream = existing
    if (stream === undefined) {
      stream = { name: message.streamName, messages: [], groupHash: null }
      namespace.streams.set(message.streamName, stream)
      category.streams++
    }
    stream.messages.push(message)
    category.messages.push(message)
    namespace.all.push(message)
    namespace.ids.add(message.id)

    const written: Written = {
      stream: message.streamName,
      category: categoryName,
      position: message.position,
      globalPosition: message.globalPosition
    }
    for (const listener of namespace.listeners) listener(written)
  }

  streamOf(namespace: Namespace, name: string): Stream | undefined {
    return namespace.streams.get(name)
  }

  /** Stream messages from stream position `position`, at most `limit` (undefined: all). */
  streamFromPosition(namespace: Namespace, name: string, position: number, limit: number | undefined) {
    const messages = namespace.streams.get(name)?.messages ?? []
    const start = Math.max(0, position)
    return messages.slice(start, limit === undefined ? undefined : start + limit)
  }

  /** Stream messages whose global position is at least `from`, at most `limit` (undefined: all). */
  streamFromGlobal(namespace: Namespace, name: string, from: number, limit: number | undefined) {
    const messages = namespace.streams.get(name)?.messages ?? []
    const start = firstAtOrAfter(messages, from)
    return messages.slice(start, limit === undefined ? undefined : start + limit)
  }

  /** The last message of a stream, optionally the last of a type. */
  streamLast(namespace: Namespace, name: string, type: string | undefined): Message | undefined {
    const messages = namespace.streams.get(name)?.messages ?? []
    for (let i = messages.length - 1; i >= 0; i--) {
      const message = messages[i]!
      if (type === undefined || message.type === type) return message
    }
    return undefined
  }

  /** The member of a consumer group of `size` that owns a stream, computed once per stream. */
  private owns(namespace: Namespace, streamName: string, member: number, size: number): boolean {
    const stream = namespace.streams.get(streamName)
    if (stream === undefined) return false
    if (stream.groupHash === null) stream.groupHash = StreamName.groupHash(streamName)
    return stream.groupHash !== undefined && Number(stream.groupHash % BigInt(size)) === member
  }

  /**
   * Category messages (`""`: the whole namespace) from global position `from`, filtered by correlation category
   * and consumer group, at most `limit` (undefined: all).
   */
  category(
    namespace: Namespace,
    name: string,
    options: {
      readonly from: number
      readonly limit: number | undefined
      readonly correlation: string | undefined
      readonly group: { readonly member: number; readonly size: number } | undefined
    }
  ): Array<Message> {
    const source = name === "" ? namespace.all : namespace.categories.get(name)?.messages ?? []
    const { correlation, group, limit } = options
    const result: Array<Message> = []
    if (limit === 0) return result
    for (let i = firstAtOrAfter(source, options.from); i < source.length; i++) {
      const message = source[i]!
      if (correlation !== undefined && message.correlation !== correlation) continue
      if (group !== undefined && !this.owns(namespace, message.streamName, group.member, group.size)) continue
      result.push(message)
      if (limit !== undefined && result.length >= limit) break
    }
    return result
  }

  /** Adds a listener for every write to the namespace; returns its removal. */
  listen(namespace: Namespace, listener: (written: Written) => void): () => void {
    namespace.listeners.add(listener)
    return () => namespace.listeners.delete(listener)
  }
}
