/**
 * Bad input on the public entry points: each is refused with a typed error, and nothing reaches EventoDB or the
 * database. Runs against the in-process server, or a real one through `EVENTODB_URL` and `EVENTODB_ADMIN_TOKEN`.
 *
 * Inputs that only a cast can produce are cast on purpose: JavaScript callers and decoded configuration get no help
 * from the types.
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type * as HttpClient from "@effect/platform/HttpClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { SqlClient } from "@effect/sql/SqlClient"
import { assert, layer } from "@effect/vitest"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as Consumer from "../src/Consumer.js"
import * as EventoClient from "../src/EventoClient.js"
import * as EventodbKit from "../src/EventodbKit.js"
import * as EventoTestServer from "../src/EventoTestServer.js"
import * as Idempotency from "../src/Idempotency.js"
import * as Migrations from "../src/Migrations.js"
import * as Outbox from "../src/Outbox.js"
import * as PositionStore from "../src/PositionStore.js"
import * as Singleton from "../src/Singleton.js"
import * as EventoTest from "./support/EventoTest.js"
import * as PgTest from "./support/PgTest.js"

const TestLayer: Layer.Layer<
  SqlClient | PgClient.PgClient | EventoTest.EventoTarget | HttpClient.HttpClient
> = Layer.mergeAll(
  Layer.effectDiscard(Effect.orDie(Migrations.up())).pipe(Layer.provideMerge(PgTest.layer)),
  EventoTest.layerTarget,
  NodeHttpClient.layerUndici
)

/** Anything a cast can smuggle past the types. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const cast = (value: unknown): any => value

const cycle = (): Record<string, unknown> => {
  const value: Record<string, unknown> = { a: 1 }
  value["self"] = value
  return value
}

/** Fails unless `effect` fails with an error tagged `tag` (and `reason`, when given). */
const refused = <A, E extends { readonly _tag: string }, R>(
  what: string,
  effect: Effect.Effect<A, E, R>,
  tag: string,
  reason?: string
) =>
  Effect.gen(function*() {
    const result = yield* Effect.either(effect)
    if (Either.isRight(result)) return assert.fail(`${what}: accepted, expected ${tag}`)
    assert.strictEqual(result.left._tag, tag, `${what}: ${JSON.stringify(result.left)}`)
    if (reason !== undefined) {
      assert.strictEqual((result.left as unknown as { readonly reason?: string }).reason, reason, what)
    }
  })

/** A client on a namespace of its own (deleted afterwards), and a way to read everything in that namespace. */
const freshClient = Effect.gen(function*() {
  const target = yield* EventoTest.EventoTarget
  const { namespace, token } = yield* EventoTest.freshNamespace
  const client = yield* EventoClient.make({ url: target.url, token }).pipe(Effect.orDie)
  const everything = client.categoryGet("").pipe(Effect.orDie)
  return { client, namespace, token, target, everything }
})

let counter = 0
const freshName = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`

/** The outbox rows of a namespace. */
const outboxRows = (namespace: string) =>
  Effect.flatMap(
    SqlClient,
    (sql) =>
      sql<{ n: number }>`SELECT count(*)::int AS n FROM evento_outbox WHERE namespace = ${namespace}`.pipe(
        Effect.map((rows) => rows[0]?.n ?? -1),
        Effect.orDie
      )
  )

const fromMap = (entries: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(entries))))

const someToken = `ns_${Buffer.from("default").toString("base64url")}_${"0".repeat(64)}`

layer(TestLayer, { timeout: "60 seconds", excludeTestServices: true })("Bad input", (it) => {
  // --- EventoClient ---

  it.scoped("EventoClient refuses empty and non-string stream and category names before sending", () =>
    Effect.gen(function*() {
      const { client, everything } = yield* freshClient
      const message = { type: "Happened", data: {} }
      for (const name of ["", cast(42), cast(null), cast(undefined), cast({ stream: "a-1" })]) {
        const label = JSON.stringify(name) ?? "undefined"
        yield* refused(`streamWrite ${label}`, client.streamWrite(name, message), "InvalidRequest")
        yield* refused(`streamGet ${label}`, client.streamGet(name), "InvalidRequest")
        yield* refused(`streamLast ${label}`, client.streamLast(name), "InvalidRequest")
        yield* refused(`streamVersion ${label}`, client.streamVersion(name), "InvalidRequest")
      }
      yield* refused("categoryGet 42", client.categoryGet(cast(42)), "InvalidRequest")
      yield* refused("namespaceCreate \"\"", client.namespaceCreate(""), "InvalidRequest")
      assert.deepStrictEqual(yield* everything, [])
    }))

  it.scoped("EventoClient refuses messages whose type, data or metadata are not what the server stores", () =>
    Effect.gen(function*() {
      const { client, everything } = yield* freshClient
      const stream = "shape-1"
      const shapes: ReadonlyArray<readonly [string, unknown]> = [
        ["message null", null],
        ["message a string", "Happened"],
        ["type missing", { data: {} }],
        ["type empty", { type: "", data: {} }],
        ["type a number", { type: 7, data: {} }],
        ["data missing", { type: "Happened" }],
        ["data null", { type: "Happened", data: null }],
        ["data a string", { type: "Happened", data: "x" }],
        ["data a number", { type: "Happened", data: 1 }],
        ["data an array", { type: "Happened", data: [1, 2] }],
        ["data a function", { type: "Happened", data: () => ({}) }],
        ["data a Date", { type: "Happened", data: new Date(0) }],
        ["data holding a bigint", { type: "Happened", data: { amount: 10n } }],
        ["data with a cycle", { type: "Happened", data: cycle() }],
        ["metadata an array", { type: "Happened", data: {}, metadata: [] }],
        ["metadata a string", { type: "Happened", data: {}, metadata: "m" }]
      ]
      for (const [what, message] of shapes) {
        yield* refused(what, client.streamWrite(stream, cast(message)), "InvalidRequest")
      }
      assert.deepStrictEqual(yield* everything, [])
    }))

  it.scoped("EventoClient refuses bad options: versions, ids, batch sizes and consumer groups", () =>
    Effect.gen(function*() {
      const { client, everything } = yield* freshClient
      const message = { type: "Happened", data: {} }
      for (const expectedVersion of [1.5, Number.NaN, Number.POSITIVE_INFINITY, cast("0")]) {
        yield* refused(
          `expectedVersion ${String(expectedVersion)}`,
          client.streamWrite("options-1", message, { expectedVersion }),
          "InvalidRequest"
        )
      }
      // Below -1 no stream can ever match: the server answers a conflict, and writes nothing.
      yield* refused(
        "expectedVersion -2",
        client.streamWrite("options-1", message, { expectedVersion: -2 }),
        "StreamVersionConflict"
      )
      yield* refused("id a number", client.streamWrite("options-1", message, { id: cast(5) }), "InvalidRequest")
      yield* refused("options a string", client.streamWrite("options-1", message, cast("x")), "InvalidRequest")
      // Not a UUID: the server refuses it (500 BACKEND_ERROR on every backend); typed, and nothing is stored.
      const notUuid = yield* Effect.either(client.streamWrite("options-1", message, { id: "not-a-uuid" }))
      assert.isTrue(Either.isLeft(notUuid), "a non-UUID id must be refused")
      if (Either.isLeft(notUuid)) assert.include(["InvalidRequest", "EventoServerError"], notUuid.left._tag)

      for (const batchSize of [10001, 1.5, cast("10")]) {
        yield* refused(
          `streamGet batchSize ${batchSize}`,
          client.streamGet("options-1", { batchSize }),
          "InvalidRequest"
        )
        yield* refused(
          `categoryGet batchSize ${batchSize}`,
          client.categoryGet("options", { batchSize }),
          "InvalidRequest"
        )
      }
      yield* refused("position 1.5", client.streamGet("options-1", { position: 1.5 }), "InvalidRequest")
      const groups: ReadonlyArray<unknown> = [
        { member: 2, size: 2 },
        { member: 3, size: 2 },
        { member: -1, size: 2 },
        { member: 0, size: 0 },
        { member: 0.5, size: 2 },
        { member: 0 },
        "0/2"
      ]
      for (const consumerGroup of groups) {
        yield* refused(
          `consumerGroup ${JSON.stringify(consumerGroup)}`,
          client.categoryGet("options", { consumerGroup: cast(consumerGroup) }),
          "InvalidRequest"
        )
      }
      assert.deepStrictEqual(yield* everything, [])
    }))

  it.scoped("EventoClient refuses malformed, garbage, foreign and unknown tokens, and writes nothing with them", () =>
    Effect.gen(function*() {
      const { client, everything, namespace, target } = yield* freshClient
      const malformed = [
        "",
        "garbage",
        "ns_",
        `ns_${Buffer.from(namespace).toString("base64url")}`,
        `ns_${Buffer.from(namespace).toString("base64url")}_123`,
        `ns_${Buffer.from(namespace).toString("base64url")}_${"z".repeat(64)}`,
        `ns_!!_${"0".repeat(64)}`,
        `ns__${"0".repeat(64)}`,
        `ns_${Buffer.from(namespace).toString("base64url")}_${"0".repeat(64)}_extra`,
        `Bearer ns_${Buffer.from(namespace).toString("base64url")}_${"0".repeat(64)}`
      ]
      for (const token of malformed) {
        yield* refused(
          `make ${JSON.stringify(token)}`,
          EventoClient.make({ url: target.url, token }),
          "EventoAuthError",
          "invalid-token"
        )
        yield* refused(
          `withToken ${JSON.stringify(token)}`,
          client.withToken(token),
          "EventoAuthError",
          "invalid-token"
        )
      }

      // Well formed, but the secret is another namespace's or nobody's, or the namespace does not exist.
      const other = yield* EventoTest.freshNamespace
      const otherSecret = Redacted.value(other.token).split("_").pop()!
      for (const secret of [otherSecret, "a".repeat(64)]) {
        const foreign = yield* client.withToken(`ns_${Buffer.from(namespace).toString("base64url")}_${secret}`)
        yield* refused(
          "write with a foreign secret",
          foreign.streamWrite("token-1", { type: "T", data: {} }),
          "EventoAuthError",
          "unauthorized"
        )
        yield* refused("read with a foreign secret", foreign.streamGet("token-1"), "EventoAuthError", "unauthorized")
      }
      const otherClient = yield* EventoClient.make({ url: target.url, token: other.token }).pipe(Effect.orDie)
      assert.deepStrictEqual(yield* otherClient.categoryGet("").pipe(Effect.orDie), [])
      const unknown = yield* client.withToken(
        `ns_${Buffer.from(freshName("ghost")).toString("base64url")}_${"a".repeat(64)}`
      )
      yield* refused(
        "write to an unknown namespace",
        unknown.streamWrite("token-1", { type: "T", data: {} }),
        "EventoAuthError",
        "unauthorized"
      )
      assert.deepStrictEqual(yield* everything, [])

      // The testing server refuses an admin token it could not parse, or one for another namespace.
      yield* refused(
        "EventoTestServer with a garbage token",
        Effect.scoped(EventoTestServer.make({ token: "garbage" })),
        "EventoTestServerError",
        "invalid-token"
      )
      yield* refused(
        "EventoTestServer with another namespace's token",
        Effect.scoped(
          EventoTestServer.make({ token: `ns_${Buffer.from("other").toString("base64url")}_${"0".repeat(64)}` })
        ),
        "EventoTestServerError",
        "invalid-token"
      )
    }))

  it.scoped("configuration: a missing or malformed EVENTODB_TOKEN, a bad timeout or DATABASE_URL fail the layer", () =>
    Effect.gen(function*() {
      const client = (entries: Record<string, string>) =>
        Layer.build(EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))).pipe(
          Effect.scoped,
          fromMap(entries)
        )
      yield* refused("no EVENTODB_TOKEN", client({ EVENTODB_URL: "http://127.0.0.1:1" }), "ConfigError")
      yield* refused(
        "malformed EVENTODB_TOKEN",
        client({ EVENTODB_URL: "http://127.0.0.1:1", EVENTODB_TOKEN: "ns_nope" }),
        "EventoAuthError",
        "invalid-token"
      )
      yield* refused(
        "EVENTODB_TIMEOUT not a duration",
        client({ EVENTODB_URL: "http://127.0.0.1:1", EVENTODB_TOKEN: someToken, EVENTODB_TIMEOUT: "soon" }),
        "ConfigError"
      )

      const kit = (entries: Record<string, string>) =>
        Layer.build(EventodbKit.layerConfig()).pipe(Effect.scoped, fromMap(entries))
      const evento = { EVENTODB_URL: "http://127.0.0.1:1", EVENTODB_TOKEN: someToken }
      yield* refused("EventodbKit without DATABASE_URL", kit(evento), "ConfigError")
      yield* refused("EventodbKit with a garbage DATABASE_URL", kit({ ...evento, DATABASE_URL: "garbage" }), "SqlError")
      yield* refused(
        "EventodbKit with an unreachable DATABASE_URL",
        kit({ ...evento, DATABASE_URL: "postgres://postgres@127.0.0.1:1/nowhere" }),
        "SqlError"
      )
      yield* refused(
        "EventodbKit with a malformed EVENTODB_TOKEN",
        kit({ ...evento, EVENTODB_TOKEN: "x", DATABASE_URL: PgTest.serverUrl() }),
        "EventoAuthError",
        "invalid-token"
      )
    }))

  // --- Outbox ---

  it.effect("Outbox refuses bad stream names, message shapes and options, and writes no row", () =>
    Effect.gen(function*() {
      const namespace = freshName("badinput")
      const write = (stream: unknown, message: unknown, options?: unknown) =>
        Outbox.write(cast(stream), cast(message), cast(options)).pipe(Effect.provide(Outbox.layer({ namespace })))
      const ok = { type: "Happened", data: {} }
      const cases: ReadonlyArray<
        readonly [string, Effect.Effect<unknown, { readonly _tag: string }, SqlClient>, string]
      > = [
        ["stream empty", write("", ok), "invalid-stream"],
        ["stream a number", write(42, ok), "invalid-stream"],
        ["stream undefined", write(undefined, ok), "invalid-stream"],
        ["stream with NUL", write("a-\u0000", ok), "invalid-stream"],
        ["message null", write("a-1", null), "invalid-type"],
        ["type empty", write("a-1", { type: "", data: {} }), "invalid-type"],
        ["type a number", write("a-1", { type: 1, data: {} }), "invalid-type"],
        ["data missing", write("a-1", { type: "T" }), "invalid-data"],
        ["data a string", write("a-1", { type: "T", data: "x" }), "invalid-data"],
        ["data an array", write("a-1", { type: "T", data: [] }), "invalid-data"],
        ["data a function", write("a-1", { type: "T", data: () => 1 }), "invalid-data"],
        ["data holding a function", write("a-1", { type: "T", data: { f: () => 1 } }), "invalid-data"],
        ["data holding a bigint", write("a-1", { type: "T", data: { b: 1n } }), "invalid-data"],
        ["data with a cycle", write("a-1", { type: "T", data: cycle() }), "invalid-data"],
        ["data holding NaN", write("a-1", { type: "T", data: { x: Number.NaN } }), "invalid-data"],
        ["data holding Infinity", write("a-1", { type: "T", data: { x: Infinity } }), "invalid-data"],
        ["data holding undefined", write("a-1", { type: "T", data: { x: undefined } }), "invalid-data"],
        ["data a Map", write("a-1", { type: "T", data: new Map() }), "invalid-data"],
        ["data holding a Date", write("a-1", { type: "T", data: { at: new Date(0) } }), "invalid-data"],
        ["data holding a symbol", write("a-1", { type: "T", data: { s: Symbol("s") } }), "invalid-data"],
        ["metadata null", write("a-1", { type: "T", data: {}, metadata: null }), "invalid-metadata"],
        ["metadata an array", write("a-1", { type: "T", data: {}, metadata: [] }), "invalid-metadata"],
        ["expectedVersion -2", write("a-1", ok, { expectedVersion: -2 }), "invalid-expected-version"],
        ["expectedVersion 1.5", write("a-1", ok, { expectedVersion: 1.5 }), "invalid-expected-version"],
        ["expectedVersion NaN", write("a-1", ok, { expectedVersion: Number.NaN }), "invalid-expected-version"],
        ["expectedVersion \"0\"", write("a-1", ok, { expectedVersion: "0" }), "invalid-expected-version"],
        ["id not a UUID", write("a-1", ok, { id: "not-a-uuid" }), "invalid-id"],
        ["id a number", write("a-1", ok, { id: 7 }), "invalid-id"],
        ["idempotencyKey empty", write("a-1", ok, { idempotencyKey: "" }), "invalid-idempotency-key"],
        ["idempotencyKey a number", write("a-1", ok, { idempotencyKey: 7 }), "invalid-idempotency-key"],
        [
          "data.idempotency_key empty",
          write("a-1", { type: "T", data: { idempotency_key: "" } }),
          "invalid-idempotency-key"
        ],
        [
          "data over maxMessageBytes",
          Outbox.write("a-1", { type: "T", data: { text: "x".repeat(200) } }).pipe(
            Effect.provide(Outbox.layer({ namespace, maxMessageBytes: 100 }))
          ),
          "too-large"
        ]
      ]
      for (const [what, effect, reason] of cases) yield* refused(what, effect, "InvalidOutboxMessage", reason)

      const batch = Outbox.writeBatch([
        { stream: "a-1", message: ok },
        { stream: "a-2", message: cast({ type: "T", data: [] }) },
        { stream: "a-3", message: ok }
      ]).pipe(Effect.provide(Outbox.layer({ namespace })))
      yield* refused("a batch with one bad entry", batch, "InvalidOutboxMessage", "invalid-data")
      assert.strictEqual(yield* outboxRows(namespace), 0)
    }))

  // --- Consumer ---

  it.scoped("Consumer refuses bad options before reading or writing anything", () =>
    Effect.gen(function*() {
      const { client, namespace } = yield* freshClient
      yield* client.streamWrite("options-1", { type: "Happened", data: {} }).pipe(Effect.orDie)
      let calls = 0
      const base = { category: "options", consumerId: "bad-options", handler: () => Effect.sync(() => void calls++) }
      const cases: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
        ["batchSize", { batchSize: 0 }],
        ["batchSize", { batchSize: -1 }],
        ["batchSize", { batchSize: 1.5 }],
        ["batchSize", { batchSize: 10001 }],
        ["group", { group: { member: 2, size: 2 } }],
        ["group", { group: { member: 5, size: 2 } }],
        ["group", { group: { member: -1, size: 2 } }],
        ["group", { group: { member: 0, size: 0 } }],
        ["group", { group: { member: 0.5, size: 2 } }],
        ["category", { category: "" }],
        ["category", { category: "options-1" }],
        ["consumerId", { consumerId: "" }],
        ["retry.attempts", { retry: { attempts: 0 } }]
      ]
      const services = Layer.mergeAll(
        Layer.succeed(EventoClient.EventoClient, client),
        PositionStore.layer,
        Idempotency.layer
      )
      for (const [option, overrides] of cases) {
        const exit = yield* Consumer.run({ ...base, ...overrides } as Consumer.Options<never, never>).pipe(
          Effect.provide(services),
          Effect.timeout("5 seconds"),
          Effect.exit
        )
        assert.isTrue(Exit.isFailure(exit), `${JSON.stringify(overrides)} accepted`)
        if (Exit.isFailure(exit)) {
          const error = Cause.squash(exit.cause)
          assert.include(String(error instanceof Error ? error.message : error), option, JSON.stringify(overrides))
        }
      }
      assert.strictEqual(calls, 0)
      const sql = yield* SqlClient
      const written = yield* sql<{ n: number }>`
        SELECT ((SELECT count(*) FROM evento_consumer_positions WHERE namespace = ${namespace})
          + (SELECT count(*) FROM evento_processed_events WHERE namespace = ${namespace}))::int AS n
      `.pipe(Effect.orDie)
      assert.strictEqual(written[0]?.n, 0)
    }))

  // --- Migrations ---

  it.scoped("Migrations refuse versions they do not know, and touch nothing", () =>
    Effect.gen(function*() {
      const { url } = yield* PgTest.freshDatabase
      const context = yield* Layer.build(PgClient.layer({ url: Redacted.make(url), maxConnections: 2 })).pipe(
        Effect.orDie
      )
      const sql = Context.get(context, SqlClient)
      const tables = sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'evento\\_%' AND relkind = 'r'
      `.pipe(Effect.map((rows) => rows[0]?.n ?? -1), Effect.orDie)
      for (const version of [-1, 1.5, Migrations.latestVersion + 1, Number.NaN, Infinity, cast("1")]) {
        yield* refused(`up ${String(version)}`, Migrations.up({ version }), "MigrationsError", "invalid-version").pipe(
          Effect.provideService(SqlClient, sql)
        )
        yield* refused(`down ${String(version)}`, Migrations.down({ version }), "MigrationsError", "invalid-version")
          .pipe(
            Effect.provideService(SqlClient, sql)
          )
      }
      assert.strictEqual(yield* tables, 0)
      assert.strictEqual(yield* Migrations.currentVersion.pipe(Effect.provideService(SqlClient, sql), Effect.orDie), 0)
    }))
})

layer(TestLayer, { timeout: "60 seconds", excludeTestServices: true })(
  "Bad input: deep JSON, construction, singletons",
  (it) => {
    it.scoped("EventoClient refuses data and metadata that JSON would rewrite at any depth, naming the path", () =>
      Effect.gen(function*() {
        const { client, everything } = yield* freshClient
        const cases: ReadonlyArray<readonly [string, unknown, string]> = [
          ["data holding NaN", { type: "T", data: { x: Number.NaN } }, "message.data.x"],
          ["data holding Infinity", { type: "T", data: { x: Infinity } }, "message.data.x"],
          ["data holding a function", { type: "T", data: { f: () => 1 } }, "message.data.f"],
          ["data holding undefined", { type: "T", data: { x: undefined } }, "message.data.x"],
          ["data a Map", { type: "T", data: new Map([["a", 1]]) }, "message.data"],
          [
            "data holding NaN deep in an array",
            { type: "T", data: { a: { b: [1, Number.NaN] } } },
            "message.data.a.b[1]"
          ],
          ["data holding a Date", { type: "T", data: { at: new Date(0) } }, "message.data.at"],
          ["data holding a NUL", { type: "T", data: { s: "a\u0000b" } }, "message.data.s"],
          ["metadata holding NaN", { type: "T", data: {}, metadata: { x: Number.NaN } }, "message.metadata.x"],
          ["metadata holding undefined", { type: "T", data: {}, metadata: { x: undefined } }, "message.metadata.x"],
          ["metadata a Map", { type: "T", data: {}, metadata: new Map() }, "message.metadata"]
        ]
        for (const [what, message, path] of cases) {
          const error = yield* Effect.flip(client.streamWrite("deep-1", cast(message)))
          assert.strictEqual(error._tag, "InvalidRequest", what)
          assert.include(error.message, path, what)
        }
        for (const options of [cast([]), cast(5), cast("x"), cast(true)]) {
          yield* refused(
            `write options ${JSON.stringify(options)}`,
            client.streamWrite("deep-1", { type: "T", data: {} }, options),
            "InvalidRequest"
          )
          yield* refused(
            `get options ${JSON.stringify(options)}`,
            client.streamGet("deep-1", options),
            "InvalidRequest"
          )
        }
        const namespace = freshName("deepns")
        yield* refused(
          "namespaceCreate with metadata holding NaN",
          client.namespaceCreate(namespace, { metadata: { x: Number.NaN } }),
          "InvalidRequest"
        )
        yield* refused("the namespace was not created", client.namespaceInfo(namespace), "NamespaceNotFound")
        assert.deepStrictEqual(yield* everything, [])
      }))

    it.scoped("EventoClient refuses a token that is not a string with EventoAuthError invalid-token, not a defect", () =>
      Effect.gen(function*() {
        const { client, everything, target } = yield* freshClient
        for (const token of [cast(42), cast(null), cast(undefined), cast({}), Redacted.make(cast(42))]) {
          const label = Redacted.isRedacted(token) ? "Redacted(42)" : String(JSON.stringify(token))
          yield* refused(
            `make ${label}`,
            EventoClient.make({ url: target.url, token }),
            "EventoAuthError",
            "invalid-token"
          )
          yield* refused(`withToken ${label}`, client.withToken(token), "EventoAuthError", "invalid-token")
        }
        assert.deepStrictEqual(yield* everything, [])
      }))

    it.scoped("EventoClient refuses an unusable URL or timeout at construction with InvalidRequest", () =>
      Effect.gen(function*() {
        const { target, token } = yield* freshClient
        const urls = [
          "not a url",
          "",
          "127.0.0.1:8080",
          "ftp://127.0.0.1:8080",
          "file:///tmp/evento",
          "http://127.0.0.1:8080/?x=1",
          "http://127.0.0.1:8080/#top",
          cast(42),
          cast(undefined)
        ]
        for (const url of urls) {
          yield* refused(`url ${JSON.stringify(url)}`, EventoClient.make({ url, token }), "InvalidRequest")
        }
        const timeouts = [-1, 0, Number.NaN, -Infinity, "0 millis", "soon", cast(null), cast({})]
        for (const timeout of timeouts) {
          yield* refused(
            `timeout ${String(timeout)}`,
            EventoClient.make({ url: target.url, token, timeout }),
            "InvalidRequest"
          )
        }
        yield* refused("options not an object", EventoClient.make(cast("http://127.0.0.1:8080")), "InvalidRequest")

        // What is fine stays fine: a trailing slash, https, a path prefix, no timeout at all.
        for (const url of [`${target.url}/`, "https://127.0.0.1:1", "http://127.0.0.1:1/evento"]) {
          yield* EventoClient.make({ url, token, timeout: Infinity }).pipe(Effect.orDie)
        }
        const client = yield* EventoClient.make({ url: `${target.url}/`, token, timeout: "5 seconds" }).pipe(
          Effect.orDie
        )
        assert.deepStrictEqual(yield* client.categoryGet("").pipe(Effect.orDie), [])

        const fromConfig = (entries: Record<string, string>) =>
          Layer.build(EventoClient.layerConfig().pipe(Layer.provide(NodeHttpClient.layerUndici))).pipe(
            Effect.scoped,
            fromMap(entries)
          )
        yield* refused(
          "EVENTODB_URL not a URL",
          fromConfig({ EVENTODB_URL: "not a url", EVENTODB_TOKEN: someToken }),
          "InvalidRequest"
        )
        yield* refused(
          "EVENTODB_TIMEOUT zero",
          fromConfig({ EVENTODB_URL: "http://127.0.0.1:1", EVENTODB_TOKEN: someToken, EVENTODB_TIMEOUT: "0 seconds" }),
          "InvalidRequest"
        )
      }))

    it.scoped("Singleton refuses a bad name or bad intervals with SingletonError, never runs the effect or locks", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const advisoryLocks = sql<{ n: number }>`
        SELECT count(*)::int AS n FROM pg_locks
          WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      `.pipe(Effect.map((rows) => rows[0]?.n ?? -1), Effect.orDie)
        const before = yield* advisoryLocks
        let runs = 0
        const guarded = Effect.sync(() => void runs++)
        const badNames = [cast(42), "", cast(null), cast(undefined), cast({ name: "x" })]
        const badOptions = [
          { pollInterval: 0 },
          { pollInterval: -1 },
          { pollInterval: Number.NaN },
          { pollInterval: "soon" },
          { pollInterval: Infinity },
          { verifyInterval: 0 },
          { verifyInterval: "0 millis" },
          { verifyInterval: -5 },
          { verifyInterval: Infinity },
          "x",
          null
        ]
        for (
          const [kind, service] of [["pg", yield* Singleton.make], ["memory", yield* Singleton.makeMemory]] as const
        ) {
          for (const name of badNames) {
            // Building the effect must not throw: the name is checked when it runs.
            const effect = service.run(name, guarded, { verifyInterval: "100 millis" })
            yield* refused(
              `${kind} name ${JSON.stringify(name)}`,
              effect.pipe(Effect.timeout("5 seconds")),
              "SingletonError",
              "invalid-name"
            )
          }
          for (const options of badOptions) {
            yield* refused(
              `${kind} options ${JSON.stringify(options)}`,
              service.run(freshName("singleton"), guarded, cast(options)).pipe(Effect.timeout("5 seconds")),
              "SingletonError",
              "invalid-options"
            )
          }
          // Still usable with good settings.
          yield* service.run(freshName("singleton"), Effect.void, {
            pollInterval: "50 millis",
            verifyInterval: "50 millis"
          })
            .pipe(Effect.timeout("5 seconds"), Effect.orDie)
        }
        assert.strictEqual(runs, 0)
        assert.strictEqual(yield* advisoryLocks, before)
        yield* refused(
          "the accessor with an empty name",
          Singleton.run("", guarded).pipe(Effect.provide(Singleton.layerMemory)),
          "SingletonError",
          "invalid-name"
        )
      }))
  }
)

layer(TestLayer, { timeout: "60 seconds", excludeTestServices: true })(
  "Bad input: outbox setup and consumer stores",
  (it) => {
    it.effect("Outbox refuses an empty namespace and a size limit that is not a positive integer when built", () =>
      Effect.gen(function*() {
        const build = (options: unknown) =>
          Outbox.write("a-1", { type: "T", data: {} }).pipe(Effect.provide(Outbox.layer(cast(options))))
        yield* refused("namespace \"\"", build({ namespace: "" }), "InvalidOutboxOptions", "invalid-namespace")
        yield* refused("namespace 7", build({ namespace: 7 }), "InvalidOutboxOptions", "invalid-namespace")
        const namespace = freshName("badsetup")
        for (const maxMessageBytes of [Number.NaN, 0, -1, 1.5, Infinity, "100"]) {
          yield* refused(
            `maxMessageBytes ${String(maxMessageBytes)}`,
            build({ namespace, maxMessageBytes }),
            "InvalidOutboxOptions",
            "invalid-max-message-bytes"
          )
        }
        yield* refused(
          "EVENTODB_OUTBOX_MAX_MESSAGE_BYTES=0",
          Outbox.write("a-1", { type: "T", data: {} }).pipe(
            Effect.provide(Outbox.layerConfig()),
            Effect.provideService(EventoClient.EventoClient, cast({ namespace })),
            fromMap({ EVENTODB_OUTBOX_MAX_MESSAGE_BYTES: "0" })
          ),
          "InvalidOutboxOptions",
          "invalid-max-message-bytes"
        )
        assert.strictEqual(yield* outboxRows(""), 0)
        assert.strictEqual(yield* outboxRows(namespace), 0)
      }))

    it.effect("Outbox refuses write options that are not an object, and writes no row", () =>
      Effect.gen(function*() {
        const namespace = freshName("badoptions")
        const ok = { type: "Happened", data: {} }
        for (const options of ["x", [1], 7, true, null]) {
          yield* refused(
            `options ${JSON.stringify(options)}`,
            Outbox.write("a-1", ok, cast(options)).pipe(Effect.provide(Outbox.layer({ namespace }))),
            "InvalidOutboxMessage",
            "invalid-options"
          )
          yield* refused(
            `batch options ${JSON.stringify(options)}`,
            Outbox.writeBatch([{ stream: "a-1", message: ok, options: cast(options) }]).pipe(
              Effect.provide(Outbox.layer({ namespace }))
            ),
            "InvalidOutboxMessage",
            "invalid-options"
          )
        }
        assert.strictEqual(yield* outboxRows(namespace), 0)
      }))

    it.effect("PositionStore and Idempotency refuse empty keys, bad positions and ids that are not UUIDs", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient
        const namespace = freshName("badstore")
        const key = { namespace, category: "order", consumerId: "c" }
        const message = (id: unknown, globalPosition: unknown) =>
          cast({ id, streamName: "order-1", type: "T", position: 0, globalPosition, data: {}, time: new Date(0) })
        const uuid = "00000000-0000-4000-8000-000000000001"
        const bad = "InvalidConsumerInput"
        const cases: ReadonlyArray<
          readonly [
            string,
            Effect.Effect<unknown, { readonly _tag: string }, PositionStore.PositionStore | Idempotency.Idempotency>,
            string
          ]
        > = [
          ["reset -7", PositionStore.reset(key, -7), "invalid-position"],
          ["save -5", PositionStore.save(key, -5), "invalid-position"],
          ["save 1.5", PositionStore.save(key, 1.5), "invalid-position"],
          ["save NaN", PositionStore.save(key, Number.NaN), "invalid-position"],
          ["save 2^53", PositionStore.save(key, 2 ** 53), "invalid-position"],
          ["save, namespace empty", PositionStore.save({ ...key, namespace: "" }, 1), "invalid-namespace"],
          ["save, category empty", PositionStore.save({ ...key, category: "" }, 1), "invalid-category"],
          ["save, consumerId empty", PositionStore.save({ ...key, consumerId: "" }, 1), "invalid-consumer-id"],
          ["load, consumerId a number", PositionStore.load({ ...key, consumerId: cast(7) }), "invalid-consumer-id"],
          ["isProcessed \"zzz\"", Idempotency.isProcessed(key, "zzz"), "invalid-event-id"],
          ["isProcessed, category empty", Idempotency.isProcessed({ ...key, category: "" }, uuid), "invalid-category"],
          ["markProcessed, id \"zzz\"", Idempotency.markProcessed(key, message("zzz", 1)), "invalid-event-id"],
          ["markProcessed, position -1", Idempotency.markProcessed(key, message(uuid, -1)), "invalid-position"],
          [
            "markProcessed, position NaN",
            Idempotency.markProcessed(key, message(uuid, Number.NaN)),
            "invalid-position"
          ],
          [
            "markProcessed, consumerId empty",
            Idempotency.markProcessed({ ...key, consumerId: "" }, message(uuid, 1)),
            "invalid-consumer-id"
          ]
        ]
        for (
          const [kind, layer] of [
            ["SQL", Layer.merge(PositionStore.layer, Idempotency.layer)],
            ["memory", Layer.merge(PositionStore.layerMemory, Idempotency.layerMemory)]
          ] as const
        ) {
          for (const [what, effect, reason] of cases) {
            yield* refused(`${kind}: ${what}`, Effect.provide(effect, layer), bad, reason)
          }
        }
        const [rows] = yield* sql<{ n: number }>`
        SELECT (SELECT count(*) FROM evento_consumer_positions WHERE namespace IN (${namespace}, ''))::int
          + (SELECT count(*) FROM evento_processed_events WHERE namespace IN (${namespace}, ''))::int AS n
      `.pipe(Effect.orDie)
        assert.strictEqual(rows?.n, 0)
      }))
  }
)
