/**
 * The RPC methods of EventoDB 0.7.0 over the in-memory store, with the server's argument checks, statuses, error
 * codes and messages (PROTOCOL.md §2-§9, Postgres backend with auth enforced).
 */
import { rfc3339, rfc3339Nano } from "./clock.js"
import * as Json from "./json.js"
import type { MemoryStore, Message, Namespace } from "./store.js"
import * as Token from "./token.js"

/** An HTTP answer with a JSON body (Go's encoder ends it with a newline). */
export interface Answer {
  readonly status: number
  readonly body: string
}

/** The server version this implementation follows. */
export const version = "0.7.0"

const statusOf: Record<string, number> = {
  INVALID_REQUEST: 400,
  METHOD_NOT_FOUND: 404,
  AUTH_REQUIRED: 401,
  AUTH_INVALID_TOKEN: 401,
  AUTH_UNAUTHORIZED: 403,
  NAMESPACE_NOT_FOUND: 404,
  STREAM_NOT_FOUND: 404,
  NAMESPACE_EXISTS: 409,
  STREAM_VERSION_CONFLICT: 409
}

/** An error answer: `{"error":{"code","message","details"?}}`, status from the code unless given. */
export const failure = (
  code: string,
  message: string,
  details?: Json.JsonObject,
  status?: number
): Answer => ({
  status: status ?? statusOf[code] ?? 500,
  body: `{"error":{"code":${Json.encodeString(code)},"message":${Json.encodeString(message)}${
    details === undefined ? "" : `,"details":${Json.encode(details)}`
  }}}\n`
})

const success = (json: string): Answer => ({ status: 200, body: `${json}\n` })

const invalid = (message: string): Answer => failure("INVALID_REQUEST", message)

// Go converts a float64 to int64 by truncation; out of range, amd64 yields the minimum int64.
const toInt64 = (value: number): number => {
  const truncated = Math.trunc(value)
  if (truncated >= 2 ** 63 || truncated < -(2 ** 63)) return -(2 ** 63)
  return truncated === 0 ? 0 : truncated
}

/** A number option, `undefined` when absent, or the answer refusing it (JSON null included). */
const numberOption = (options: Json.JsonObject, key: string, message: string): number | undefined | Answer => {
  if (!Json.has(options, key)) return undefined
  const value = options[key]
  return typeof value === "number" ? toInt64(value) : invalid(message)
}

const isAnswer = (value: unknown): value is Answer => typeof value === "object" && value !== null && "status" in value

// --- rows ---

const time = (message: Message): string => `"${rfc3339Nano(message.timeMicros)}"`

const streamRow = (m: Message): string =>
  `["${m.id}",${Json.encodeString(m.type)},${m.position},${m.globalPosition},${m.data},${m.metadata},${time(m)}]`

const categoryRow = (m: Message): string =>
  `["${m.id}",${Json.encodeString(m.streamName)},${
    Json.encodeString(m.type)
  },${m.position},${m.globalPosition},${m.data},${m.metadata},${time(m)}]`

// --- batch sizes ---

/**
 * The LIMIT the stored functions apply: -1 is none, 0 returns nothing, other negatives are a Postgres error.
 */
const limitOf = (batchSize: number): number | undefined | "negative" =>
  batchSize === -1 ? undefined : batchSize < 0 ? "negative" : batchSize

const negativeLimit = (what: string, query: string): Answer =>
  failure(
    "BACKEND_ERROR",
    `Failed to get ${what}: failed to query ${query}: ERROR: LIMIT must not be negative (SQLSTATE 2201W)`
  )

/** Reads `batchSize` with its 10000 cap; 1000 when absent. */
const batchSizeOption = (options: Json.JsonObject): number | Answer => {
  const batchSize = numberOption(options, "batchSize", "options.batchSize must be a number")
  if (batchSize === undefined) return 1000
  if (isAnswer(batchSize)) return batchSize
  return batchSize > 10000 && batchSize !== -1 ?
    invalid("options.batchSize must be <= 10000 or -1 for unlimited") :
    batchSize
}

/** The read range both `stream.get` and `category.get` take, checked in the server's order. */
const rangeOptions = (
  options: Json.JsonObject
):
  | { readonly position: number | undefined; readonly globalPosition: number | undefined; readonly batchSize: number }
  | Answer =>
{
  const position = numberOption(options, "position", "options.position must be a number")
  if (isAnswer(position)) return position
  const globalPosition = numberOption(options, "globalPosition", "options.globalPosition must be a number")
  if (isAnswer(globalPosition)) return globalPosition
  const batchSize = batchSizeOption(options)
  if (isAnswer(batchSize)) return batchSize
  return { position, globalPosition, batchSize }
}

// --- methods ---

type Method = (store: MemoryStore, namespace: Namespace, args: ReadonlyArray<unknown>) => Answer

const streamName = (value: unknown): string | Answer =>
  typeof value === "string" && value !== "" ? value : invalid("streamName must be a non-empty string")

const streamWrite: Method = (store, namespace, args) => {
  if (args.length < 2) return invalid("stream.write requires at least 2 arguments: streamName and message")
  const stream = streamName(args[0])
  if (isAnswer(stream)) return stream
  const message = args[1]
  if (!Json.isObject(message)) return invalid("message must be an object")
  const type = message.type
  if (typeof type !== "string" || type === "") return invalid("message.type must be a non-empty string")
  const data = message.data
  if (!Json.isObject(data)) return invalid("message.data must be an object")
  let metadata: Json.JsonObject | undefined
  if (Json.has(message, "metadata")) {
    if (!Json.isObject(message.metadata)) return invalid("message.metadata must be an object")
    metadata = message.metadata
  }

  let id: string | undefined
  let expectedVersion: number | undefined
  if (args.length > 2) {
    const options = args[2]
    if (!Json.isObject(options)) return invalid("options must be an object")
    if (Json.has(options, "id")) {
      if (typeof options.id !== "string") return invalid("options.id must be a string")
      id = options.id
    }
    const expected = numberOption(options, "expectedVersion", "options.expectedVersion must be a number")
    if (isAnswer(expected)) return expected
    expectedVersion = expected
  }

  const outcome = store.write(namespace, { streamName: stream, type, data, metadata, id, expectedVersion })
  const sqlError = (text: string) =>
    failure("BACKEND_ERROR", `Failed to write message: failed to write message: ERROR: ${text}`)
  switch (outcome._tag) {
    case "Written":
      return success(`{"globalPosition":${outcome.globalPosition},"position":${outcome.position}}`)
    case "VersionConflict":
      // The Postgres backend reports neither the expected nor the actual version.
      return failure("STREAM_VERSION_CONFLICT", "version conflict: expected version does not match stream version")
    case "InvalidId":
      return failure("BACKEND_ERROR", `Failed to write message: invalid UUID format: ${outcome.error}`)
    case "UuidSyntax":
      return sqlError(`invalid input syntax for type uuid: ${JSON.stringify(outcome.id)} (SQLSTATE 22P02)`)
    case "NulByte":
      return sqlError("invalid byte sequence for encoding \"UTF8\": 0x00 (SQLSTATE 22021)")
    case "NulCharacter":
      return sqlError("unsupported Unicode escape sequence (SQLSTATE 22P05)")
    case "DuplicateId":
      return sqlError("duplicate key value violates unique constraint \"messages_id\" (SQLSTATE 23505)")
  }
}

const streamGet: Method = (store, namespace, args) => {
  if (args.length < 1) return invalid("stream.get requires at least 1 argument: streamName")
  const stream = streamName(args[0])
  if (isAnswer(stream)) return stream
  let position = 0
  let globalPosition: number | undefined
  let batchSize = 1000
  if (args.length > 1) {
    const options = args[1]
    if (!Json.isObject(options)) return invalid("options must be an object")
    const range = rangeOptions(options)
    if (isAnswer(range)) return range
    position = range.position ?? 0
    globalPosition = range.globalPosition
    batchSize = range.batchSize
  }

  // With `globalPosition` the backend runs its own query: `position` is ignored and only a positive size limits.
  if (globalPosition !== undefined) {
    const messages = store.streamFromGlobal(namespace, stream, globalPosition, batchSize > 0 ? batchSize : undefined)
    return success(`[${messages.map(streamRow).join(",")}]`)
  }
  const limit = limitOf(batchSize)
  if (limit === "negative") return negativeLimit("messages", "stream messages")
  return success(`[${store.streamFromPosition(namespace, stream, position, limit).map(streamRow).join(",")}]`)
}

const streamLast: Method = (store, namespace, args) => {
  if (args.length < 1) return invalid("stream.last requires at least 1 argument: streamName")
  const stream = streamName(args[0])
  if (isAnswer(stream)) return stream
  let type: string | undefined
  if (args.length > 1) {
    const options = args[1]
    if (!Json.isObject(options)) return invalid("options must be an object")
    if (Json.has(options, "type")) {
      if (typeof options.type !== "string") return invalid("options.type must be a string")
      type = options.type
    }
  }
  const message = store.streamLast(namespace, stream, type)
  return success(message === undefined ? "null" : streamRow(message))
}

const streamVersion: Method = (store, namespace, args) => {
  if (args.length < 1) return invalid("stream.version requires 1 argument: streamName")
  const stream = streamName(args[0])
  if (isAnswer(stream)) return stream
  const messages = store.streamOf(namespace, stream)?.messages
  return success(messages === undefined || messages.length === 0 ? "null" : String(messages.length - 1))
}

const categoryGet: Method = (store, namespace, args) => {
  if (args.length < 1) return invalid("category.get requires at least 1 argument: categoryName")
  const category = args[0]
  if (typeof category !== "string") return invalid("categoryName must be a string")
  let position = 1
  let globalPosition: number | undefined
  let batchSize = 1000
  let correlation: string | undefined
  let group: { member: number; size: number } | undefined
  if (args.length > 1) {
    const options = args[1]
    if (!Json.isObject(options)) return invalid("options must be an object")
    const range = rangeOptions(options)
    if (isAnswer(range)) return range
    position = range.position ?? 1
    globalPosition = range.globalPosition
    batchSize = range.batchSize
    if (Json.has(options, "correlation")) {
      if (typeof options.correlation !== "string") return invalid("options.correlation must be a string")
      correlation = options.correlation
    }
    if (Json.has(options, "consumerGroup")) {
      const consumerGroup = options.consumerGroup
      if (!Json.isObject(consumerGroup)) return invalid("options.consumerGroup must be an object")
      const member = numberOption(consumerGroup, "member", "options.consumerGroup.member must be a number")
      if (isAnswer(member)) return member
      const size = numberOption(consumerGroup, "size", "options.consumerGroup.size must be a number")
      if (isAnswer(size)) return size
      if (member !== undefined && size !== undefined) {
        if (member < 0) return invalid("options.consumerGroup.member must be non-negative")
        if (size <= 0) return invalid("options.consumerGroup.size must be positive")
        if (member >= size) return invalid("options.consumerGroup.member must be < size")
        group = { member, size }
      } else if (member !== undefined || size !== undefined) {
        return invalid("options.consumerGroup requires both member and size")
      }
    }
  }

  const limit = limitOf(batchSize)
  if (limit === "negative") return negativeLimit("category messages", "category messages")
  const messages = store.category(namespace, category, {
    from: globalPosition ?? position,
    limit,
    correlation,
    group
  })
  return success(`[${messages.map(categoryRow).join(",")}]`)
}

const namespaceId = (args: ReadonlyArray<unknown>, usage: string): string | Answer => {
  if (args.length < 1) return invalid(usage)
  const id = args[0]
  return typeof id === "string" && id !== "" ? id : invalid("namespace ID must be a non-empty string")
}

const namespaceCreate: Method = (store, _namespace, args) => {
  const id = namespaceId(args, "ns.create requires at least 1 argument: namespace ID")
  if (isAnswer(id)) return id
  let description = ""
  let token: string | undefined
  if (args.length > 1) {
    const options = args[1]
    if (!Json.isObject(options)) return invalid("options must be an object")
    if (Json.has(options, "description")) {
      if (typeof options.description !== "string") return invalid("options.description must be a string")
      description = options.description
    }
    if (Json.has(options, "token")) {
      if (typeof options.token !== "string") return invalid("options.token must be a string")
      const parsed = Token.parse(options.token)
      if (parsed._tag === "Invalid") return invalid(`Invalid token format: ${parsed.error}`)
      if (parsed.namespace !== id) return invalid(`Token is for namespace '${parsed.namespace}', not '${id}'`)
      token = options.token
    }
    if (Json.has(options, "metadata") && !Json.isObject(options.metadata)) {
      return invalid("options.metadata must be an object")
    }
  }

  const issued = token ?? Token.generate(id)
  const created = store.createNamespace(id, issued, description)
  if (created === undefined) return failure("NAMESPACE_EXISTS", `Namespace '${id}' already exists`)
  return success(Json.encode({ namespace: id, token: issued, createdAt: rfc3339Nano(store.now()) }))
}

const namespaceDelete: Method = (store, _namespace, args) => {
  const id = namespaceId(args, "ns.delete requires 1 argument: namespace ID")
  if (isAnswer(id)) return id
  if (!store.deleteNamespace(id)) return failure("NAMESPACE_NOT_FOUND", `Namespace '${id}' not found`)
  // messagesDeleted is always 0 on the real server.
  return success(Json.encode({ namespace: id, deletedAt: rfc3339Nano(store.now()), messagesDeleted: 0 }))
}

const namespaceList: Method = (store) => {
  // Newest first, as the registry query orders; messageCount is stubbed to 0 on the real server.
  const namespaces = [...store.namespaces.values()].sort((a, b) => b.createdAt - a.createdAt || b.sequence - a.sequence)
  return success(`[${
    namespaces.map((ns) =>
      Json.encode({
        namespace: ns.id,
        description: ns.description,
        createdAt: rfc3339(ns.createdAt * 1_000_000),
        messageCount: 0
      })
    ).join(",")
  }]`)
}

const namespaceInfo: Method = (store, _namespace, args) => {
  const id = namespaceId(args, "ns.info requires 1 argument: namespace ID")
  if (isAnswer(id)) return id
  const ns = store.namespaces.get(id)
  if (ns === undefined) return failure("NAMESPACE_NOT_FOUND", `Namespace '${id}' not found`)
  // streamCount and lastActivity are stubbed on the real server; messageCount is real.
  return success(Json.encode({
    namespace: ns.id,
    description: ns.description,
    createdAt: rfc3339(ns.createdAt * 1_000_000),
    messageCount: ns.all.length,
    streamCount: 0,
    lastActivity: null
  }))
}

// A LIKE pattern `prefix%`: `%` and `_` inside the prefix are wildcards, a backslash escapes.
const likePrefix = (prefix: string): RegExp => {
  let source = "^"
  for (let i = 0; i < prefix.length; i++) {
    const c = prefix[i]!
    if (c === "\\" && i + 1 < prefix.length) source += prefix[++i]!.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
    else if (c === "%") source += "[\\s\\S]*"
    else if (c === "_") source += "[\\s\\S]"
    else source += c.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
  }
  return new RegExp(source, "u")
}

const namespaceStreams: Method = (_store, namespace, args) => {
  let prefix = ""
  let cursor = ""
  let limit = 100
  if (args.length > 0) {
    const options = args[0]
    if (!Json.isObject(options)) return invalid("options must be an object")
    if (Json.has(options, "prefix")) {
      if (typeof options.prefix !== "string") return invalid("prefix must be a string")
      prefix = options.prefix
    }
    if (Json.has(options, "cursor")) {
      if (typeof options.cursor !== "string") return invalid("cursor must be a string")
      cursor = options.cursor
    }
    const l = numberOption(options, "limit", "limit must be a number")
    if (isAnswer(l)) return l
    if (l !== undefined) {
      if (l <= 0 || l > 1000) return invalid("limit must be between 1 and 1000")
      limit = l
    }
  }
  const pattern = likePrefix(prefix)
  const names = [...namespace.streams.keys()]
    .filter((name) => name > cursor && pattern.test(name))
    .sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
    .slice(0, limit)
  return success(`[${
    names.map((name) => {
      const messages = namespace.streams.get(name)!.messages
      const last = messages[messages.length - 1]!
      return Json.encode({ stream: name, version: last.position, lastActivity: rfc3339(last.timeMicros) })
    }).join(",")
  }]`)
}

const namespaceCategories: Method = (_store, namespace) => {
  const names = [...namespace.categories.keys()].sort((a, b) => a < b ? -1 : a > b ? 1 : 0)
  return success(`[${
    names.map((name) => {
      const category = namespace.categories.get(name)!
      return Json.encode({ category: name, streamCount: category.streams, messageCount: category.messages.length })
    }).join(",")
  }]`)
}

const methods: Record<string, Method> = {
  "sys.version": () => success(Json.encodeString(version)),
  "sys.health": () => success(`{"backend":"unknown","connections":0,"status":"ok"}`),
  "stream.write": streamWrite,
  "stream.get": streamGet,
  "stream.last": streamLast,
  "stream.version": streamVersion,
  "category.get": categoryGet,
  "ns.create": namespaceCreate,
  "ns.delete": namespaceDelete,
  "ns.list": namespaceList,
  "ns.info": namespaceInfo,
  "ns.streams": namespaceStreams,
  "ns.categories": namespaceCategories
}

/** Runs one decoded RPC call (`[method, ...args]`) for an authenticated namespace. */
export const dispatch = (store: MemoryStore, namespace: Namespace, call: ReadonlyArray<unknown>): Answer => {
  if (call.length < 1) return invalid("Missing method name")
  const method = call[0]
  if (typeof method !== "string") return invalid("Method name must be a string")
  const run = Object.prototype.hasOwnProperty.call(methods, method) ? methods[method] : undefined
  if (run === undefined) return failure("METHOD_NOT_FOUND", `Unknown method: ${method}`)
  return run(store, namespace, call.slice(1))
}
