import * as PgClient from "@effect/sql-pg/PgClient"
import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it, layer } from "@effect/vitest"
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import * as Redacted from "effect/Redacted"
import * as Scope from "effect/Scope"
import * as net from "node:net"
import * as internal from "../src/internal/singleton.js"
import * as Singleton from "../src/Singleton.js"
import * as PgTest from "./support/PgTest.js"
import * as Processes from "./support/Processes.js"

// Short intervals keep the file fast; every bound below is derived from them.
const poll = 100
const verify = 200
const fence = 2 * verify
const options = { pollInterval: Duration.millis(poll), verifyInterval: Duration.millis(verify) }
const adminApp = "singleton-test-admin"

// --- Log capture: "singleton acquired" times are read from the logs ---

interface LogLine {
  readonly at: number
  readonly level: string
  readonly message: string
  readonly annotations: Readonly<Record<string, unknown>>
}

const logs: Array<LogLine> = []

const recorder = Logger.make(({ annotations, date, logLevel, message }) => {
  logs.push({
    at: date.getTime(),
    level: logLevel.label,
    message: Array.isArray(message) ? message.join(" ") : String(message),
    annotations: Object.fromEntries(HashMap.toEntries(annotations))
  })
})

const logsOf = (message: string, node?: string) =>
  logs.filter((line) => line.message === message && (node === undefined || line.annotations.node === node))

// --- The database: one per file, with an admin pool the tests query through ---

class Database extends Context.Tag("test/SingletonDatabase")<Database, { readonly url: string }>() {}

const DatabaseLive = Layer.scoped(Database, PgTest.freshDatabase)

const AdminLive = Layer.unwrapEffect(
  Effect.map(
    Database,
    ({ url }) =>
      PgClient.layer({ url: Redacted.make(url), maxConnections: 2, applicationName: adminApp }).pipe(Layer.orDie)
  )
)

const TestLive = Layer.mergeAll(
  AdminLive,
  Logger.replace(Logger.defaultLogger, recorder),
  Logger.minimumLogLevel(LogLevel.Debug)
).pipe(Layer.provideMerge(DatabaseLive))

const keyOf = (name: string) => internal.lockKey(name).toString()

/** The advisory lock entries of `name` in the test database. */
const lockEntries = (name: string) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    sql<{ pid: number; granted: boolean }>`
      SELECT pid, granted
      FROM pg_locks
      WHERE locktype = 'advisory'
        AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND objsubid = 1
        AND ((classid::bigint << 32) | objid::bigint) = ${keyOf(name)}::bigint
    `).pipe(Effect.orDie)

const terminate = (pid: number) =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql`SELECT pg_terminate_backend(${pid})`).pipe(Effect.orDie)

// --- Nodes: a PgClient pool of their own and a Singleton service on it, in a scope the test can close ---

const startNode = (id: string, maxConnections = 2) =>
  Effect.gen(function*() {
    const { url } = yield* Database
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(
      Singleton.layer.pipe(Layer.provideMerge(PgClient.layer({ url: Redacted.make(url), maxConnections }))),
      scope
    ).pipe(Effect.orDie)
    return {
      id,
      sql: Context.get(context, SqlClient.SqlClient),
      run: <A, E>(name: string, effect: Effect.Effect<A, E>, runOptions: Singleton.RunOptions = options) =>
        Singleton.run(name, effect, runOptions).pipe(Effect.provide(context), Effect.annotateLogs("node", id)),
      fork: <A, E>(name: string, effect: Effect.Effect<A, E>, runOptions: Singleton.RunOptions = options) =>
        Singleton.run(name, effect, runOptions).pipe(
          Effect.provide(context),
          Effect.annotateLogs("node", id),
          Effect.forkIn(scope)
        ),
      close: Scope.close(scope, Exit.void)
    }
  })

// --- A timeline of guarded-effect starts and stops, in the order they happened (one JS thread) ---

interface Event {
  readonly node: string
  readonly kind: "start" | "stop"
  readonly at: number
}

const makeTimeline = () => {
  const events: Array<Event> = []
  const record = (node: string, kind: Event["kind"]) =>
    Effect.flatMap(Clock.currentTimeMillis, (at) => Effect.sync(() => void events.push({ node, kind, at })))
  return {
    events,
    guarded: (node: string) =>
      record(node, "start").pipe(Effect.zipRight(Effect.never), Effect.onExit(() => record(node, "stop"))),
    starts: () => events.filter((event) => event.kind === "start"),
    stops: () => events.filter((event) => event.kind === "stop")
  }
}

/** Walks events in order: at no moment may two guarded effects run. */
const assertNoOverlap = (events: ReadonlyArray<Event>) => {
  const running = new Set<string>()
  for (const event of events) {
    if (event.kind === "start") {
      assert.strictEqual(running.size, 0, `${event.node} started while ${[...running].join(",")} ran`)
      running.add(event.node)
    } else {
      running.delete(event.node)
    }
  }
}

const waitUntil = (condition: () => boolean, timeout: Duration.DurationInput, what: string) =>
  Effect.sync(condition).pipe(
    Effect.tap((done) => done ? Effect.void : Effect.sleep(Duration.millis(5))),
    Effect.repeat({ until: (done) => done }),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Error(`timed out waiting until ${what}`) }),
    Effect.orDie
  )

const now = Clock.currentTimeMillis

const report = (label: string, ms: number) => Effect.sync(() => console.log(`[singleton] ${label}: ${ms} ms`))

// --- A TCP proxy in front of PostgreSQL, to take the database away, stall it, and bring it back ---

interface TcpProxy {
  readonly port: number
  /** Closes every connection and refuses new ones. */
  readonly down: Effect.Effect<void>
  /** Listens again on the same port. */
  readonly up: Effect.Effect<void>
  /** Stops moving bytes, on open connections and new ones, without closing anything: a network partition. */
  readonly stall: Effect.Effect<void>
}

const tcpProxy = (target: { host: string; port: number }) =>
  Effect.gen(function*() {
    const pairs = new Set<{ client: net.Socket; upstream: net.Socket }>()
    let server: net.Server | undefined
    let stalled = false
    const blackholed = new Set<net.Socket>()
    const listen = (port: number) =>
      Effect.async<number>((resume) => {
        server = net.createServer((client) => {
          if (stalled) {
            client.pause()
            blackholed.add(client)
            client.on("error", () => client.destroy())
            return
          }
          const upstream = net.connect(target.port, target.host)
          const pair = { client, upstream }
          pairs.add(pair)
          client.pipe(upstream).pipe(client)
          const drop = () => {
            client.destroy()
            upstream.destroy()
            pairs.delete(pair)
          }
          client.on("error", drop).on("close", drop)
          upstream.on("error", drop).on("close", drop)
        })
        server.listen(port, "127.0.0.1", () => {
          const address = server?.address()
          resume(Effect.succeed(typeof address === "object" && address !== null ? address.port : port))
        })
      })
    const down = Effect.sync(() => {
      server?.close()
      server = undefined
      for (const { client, upstream } of pairs) {
        client.destroy()
        upstream.destroy()
      }
      pairs.clear()
      for (const socket of blackholed) socket.destroy()
      blackholed.clear()
    })
    const port = yield* Effect.acquireRelease(listen(0), () => down)
    const proxy: TcpProxy = {
      port,
      down,
      up: Effect.asVoid(listen(port)),
      stall: Effect.sync(() => {
        stalled = true
        for (const { client, upstream } of pairs) {
          client.unpipe(upstream)
          upstream.unpipe(client)
          client.pause()
          upstream.pause()
        }
      })
    }
    return proxy
  })

/** A Singleton service whose connections (pool and locks) go through `proxy`. */
const nodeThrough = (proxy: TcpProxy) =>
  Effect.gen(function*() {
    const { url } = yield* Database
    const proxied = new URL(url)
    proxied.hostname = "127.0.0.1"
    proxied.port = String(proxy.port)
    return yield* Layer.buildWithScope(
      Singleton.layer.pipe(Layer.provide(PgClient.layer({ url: Redacted.make(proxied.toString()) }))),
      yield* Effect.scope
    ).pipe(Effect.orDie)
  })

const proxyTo = Effect.flatMap(Database, ({ url }) => {
  const target = new URL(url)
  return tcpProxy({ host: target.hostname, port: Number(target.port || 5432) })
})

layer(TestLive, { excludeTestServices: true, timeout: "60 seconds" })("Singleton on PostgreSQL", (it) => {
  it.effect("derives the lock key as PostgreSQL does: the first 8 bytes of md5(name) as a signed bigint", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const names = ["", "a", "outbox-sender:default", "consumer:ns:orders:member-0", "Ünïcødé ✓ 名前", "x".repeat(500)]
      const keys = names.map(internal.lockKey)
      for (const [index, name] of names.entries()) {
        const rows = yield* sql<{ key: string }>`
          SELECT (('x' || left(md5(${name}), 16))::bit(64)::bigint)::text AS key
        `
        assert.strictEqual(keys[index]?.toString(), rows[0]?.key, name)
      }
      // Both signs occur, so a reading as unsigned would have shown.
      assert.isTrue(keys.some((key) => key < 0n) && keys.some((key) => key > 0n))
      assert.strictEqual(internal.lockKey("a"), 919145239626757800n) // md5("a") = 0cc175b9c0f1b6a8...
    }))

  it.scoped("two nodes compete: exactly one runs, and closing its scope hands over", () =>
    Effect.gen(function*() {
      const name = "two-nodes"
      const timeline = makeTimeline()
      const nodes = [yield* startNode("a"), yield* startNode("b")]
      for (const node of nodes) yield* node.fork(name, timeline.guarded(node.id))

      yield* waitUntil(() => timeline.starts().length > 0, "5 seconds", "a node starts")
      yield* Effect.sleep(Duration.millis(5 * verify))
      assert.strictEqual(timeline.starts().length, 1)
      assert.strictEqual(timeline.stops().length, 0)
      assert.strictEqual((yield* lockEntries(name)).length, 1)

      const holder = timeline.starts()[0]!.node
      const other = nodes.find((node) => node.id !== holder)!
      const closedAt = yield* now
      yield* nodes.find((node) => node.id === holder)!.close
      yield* waitUntil(() => timeline.starts().length === 2, "5 seconds", "the other node starts")

      const acquiredAt = logsOf("singleton acquired", other.id).at(-1)!.at
      const startedAt = timeline.starts()[1]!.at
      assert.strictEqual(timeline.starts()[1]!.node, other.id)
      assertNoOverlap(timeline.events)
      yield* report("scope close -> lock acquired by the other node", acquiredAt - closedAt)
      yield* report("scope close -> effect started on the other node", startedAt - closedAt)
      assert.isAtMost(acquiredAt - closedAt, poll + 300)
      assert.isAtMost(startedAt - closedAt, poll + fence + 400)
      assert.isAtLeast(startedAt - acquiredAt, fence)
    }))

  it.scoped("terminating the holder's lock connection interrupts it and the other node takes over", () =>
    Effect.gen(function*() {
      const name = "terminate-holder"
      const timeline = makeTimeline()
      const nodes = [yield* startNode("a"), yield* startNode("b")]
      for (const node of nodes) yield* node.fork(name, timeline.guarded(node.id))
      yield* waitUntil(() => timeline.starts().length > 0, "5 seconds", "a node starts")
      yield* Effect.sleep(Duration.millis(verify))
      const holder = timeline.starts()[0]!.node

      const [entry] = yield* lockEntries(name)
      const terminatedAt = yield* now
      yield* terminate(entry!.pid)
      yield* waitUntil(() => timeline.starts().length === 2, "5 seconds", "the other node starts")

      const stoppedAt = timeline.stops()[0]!.at
      const startedAt = timeline.starts()[1]!.at
      assert.notStrictEqual(timeline.starts()[1]!.node, holder)
      assertNoOverlap(timeline.events)
      yield* report("terminate -> old holder's effect interrupted", stoppedAt - terminatedAt)
      yield* report("terminate -> effect started on the other node", startedAt - terminatedAt)
      assert.isAtMost(stoppedAt - terminatedAt, verify + 150)
      assert.isAtMost(startedAt - terminatedAt, poll + fence + 400)
      assert.isAtLeast(startedAt, stoppedAt)

      // The old holder competes again but stays out while the new one holds.
      yield* Effect.sleep(Duration.millis(3 * verify))
      assert.strictEqual(timeline.starts().length, 2)
      const entries = yield* lockEntries(name)
      assert.strictEqual(entries.length, 1)
      assert.notStrictEqual(entries[0]!.pid, entry!.pid)
    }))

  it.scoped("eight singletons on an application pool of 2 all run, and the pool stays usable", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const timeline = makeTimeline()
      const node = yield* startNode("pool-2", 2)
      const names = Array.from({ length: 8 }, (_, index) => `eight-${index}`)
      for (const name of names) yield* node.fork(name, timeline.guarded(name))

      yield* waitUntil(() => timeline.starts().length === 8, Duration.millis(poll + fence + 2000), "all eight run")
      const started = yield* now
      const answers = yield* Effect.all(
        Array.from({ length: 4 }, () => node.sql<{ one: number }>`SELECT 1 AS one`),
        { concurrency: "unbounded" }
      ).pipe(Effect.timeout("1 second"), Effect.orDie)
      yield* report("pool of 2 under eight singletons: four queries answered in", (yield* now) - started)
      assert.deepStrictEqual(answers.map((rows) => rows[0]?.one), [1, 1, 1, 1])

      const holders = new Set<number>()
      for (const name of names) {
        const entries = yield* lockEntries(name)
        assert.strictEqual(entries.length, 1, name)
        holders.add(entries[0]!.pid)
      }
      assert.strictEqual(holders.size, 8, "each singleton holds its lock on its own connection")
      const pool = yield* sql<{ count: number }>`
        SELECT count(*)::int AS count
        FROM pg_stat_activity
        WHERE datname = current_database() AND pid = ANY(${[...holders]}::int[])
          AND application_name = 'eventodb-kit/singleton'
      `.pipe(Effect.orDie)
      assert.strictEqual(pool[0]?.count, 8)
      assert.strictEqual(timeline.stops().length, 0)
    }))

  it.scoped(
    "three OS processes compete; after kill -9 of the leader another leads within the bound",
    () =>
      Effect.gen(function*() {
        const { url } = yield* Database
        const name = "three-processes"
        const ids = ["p1", "p2", "p3"]
        const children = yield* Effect.forEach(ids, (id) =>
          Processes.spawnTs("test/fixtures/singleton-node.ts", {
            args: [url, name, id, String(poll), String(verify)]
          }).pipe(Effect.map((child) => ({ id, child }))))
        const startsOf = (lines: ReadonlyArray<string>) => lines.filter((line) => line.startsWith("start "))
        const allStarts = Effect.map(
          Effect.forEach(children, ({ child }) => child.stdout),
          (outputs) => outputs.flatMap(startsOf).map((line) => line.split(" "))
        )

        const first = yield* Effect.raceAll(
          children.map(({ child, id }) =>
            Effect.as(child.waitForLine((line) => line.startsWith("start "), "30 seconds"), id)
          )
        ).pipe(Effect.orDie)
        yield* Effect.sleep(Duration.millis(5 * verify))
        assert.strictEqual((yield* allStarts).length, 1)

        const leader = children.find(({ id }) => id === first)!
        const killedAt = Date.now()
        yield* leader.child.kill("SIGKILL")
        const status = yield* leader.child.exited
        assert.strictEqual(status.signal, "SIGKILL")

        const followers = children.filter(({ id }) => id !== first)
        yield* Effect.raceAll(
          followers.map(({ child }) => child.waitForLine((line) => line.startsWith("start "), "10 seconds"))
        ).pipe(Effect.orDie)
        yield* Effect.sleep(Duration.millis(3 * verify))
        const starts = yield* allStarts
        assert.strictEqual(starts.length, 2, "exactly one follower took over")
        const startedAt = Number(starts.find(([, id]) => id !== first)![2])
        yield* report("kill -9 of the leader process -> effect started in another process", startedAt - killedAt)
        assert.isAbove(startedAt, killedAt)
        assert.isAtMost(startedAt - killedAt, poll + fence + 1000)

        // A clean stop releases the lock and prints the stop line.
        for (const { child } of followers) yield* child.kill("SIGTERM")
        for (const { child } of followers) assert.strictEqual((yield* child.exited).code, 0)
        const stops = (yield* Effect.forEach(followers, ({ child }) => child.stdout)).flat().filter((line) =>
          line.startsWith("stop ")
        )
        assert.strictEqual(stops.length, 1)
        assert.strictEqual((yield* lockEntries(name)).length, 0)
      }),
    { timeout: 60_000 }
  )

  it.scoped("leadership resumes by itself after every connection to the database is terminated", () =>
    Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      const name = "terminate-all"
      const timeline = makeTimeline()
      const nodes = [yield* startNode("a"), yield* startNode("b")]
      for (const node of nodes) yield* node.fork(name, timeline.guarded(node.id))
      yield* waitUntil(() => timeline.starts().length > 0, "5 seconds", "a node starts")

      for (let round = 1; round <= 2; round++) {
        const terminatedAt = yield* now
        const killed = yield* sql<{ pid: number; app: string }>`
          SELECT pid, application_name AS app FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name <> ${adminApp}
            AND pg_terminate_backend(pid)
        `.pipe(Effect.orDie)
        // Round 1 also takes the application pools; in round 2 they have not reconnected yet.
        assert.isAtLeast(killed.length, round === 1 ? 4 : 2)
        assert.strictEqual(killed.filter(({ app }) => app === "eventodb-kit/singleton").length, 2)
        yield* waitUntil(() => timeline.starts().length === round + 1, "5 seconds", "leadership resumes")
        const startedAt = timeline.starts()[round]!.at
        yield* report(`terminate all (round ${round}) -> effect running again`, startedAt - terminatedAt)
        assert.isAtMost(startedAt - terminatedAt, 2 * poll + fence + 500)
      }
      assertNoOverlap(timeline.events)
      assert.strictEqual((yield* lockEntries(name)).length, 1)
      // The applications' pools recover too: nothing had to be restarted.
      for (const node of nodes) yield* node.sql`SELECT 1`.pipe(Effect.orDie)
    }))

  it.scoped("leadership resumes after the database is unreachable for a while", () =>
    Effect.gen(function*() {
      const proxy = yield* proxyTo
      const context = yield* nodeThrough(proxy)
      const name = "downtime"
      const timeline = makeTimeline()
      yield* Singleton.run(name, timeline.guarded("downtime"), options).pipe(
        Effect.provide(context),
        Effect.annotateLogs("node", "downtime"),
        Effect.forkScoped
      )
      yield* waitUntil(() => timeline.starts().length === 1, "5 seconds", "the node leads")

      const downAt = yield* now
      yield* proxy.down
      yield* waitUntil(() => timeline.stops().length === 1, "5 seconds", "the effect stops")
      yield* report("database unreachable -> effect interrupted", timeline.stops()[0]!.at - downAt)
      yield* Effect.sleep(Duration.millis(10 * poll))
      const failures = logsOf("singleton connection failed", "downtime")
      assert.isAtLeast(failures.length, 3, "it kept trying to reconnect")
      assert.deepStrictEqual(failures.map((line) => line.level).filter((level) => level === "WARN"), ["WARN"])

      const upAt = yield* now
      yield* proxy.up
      yield* waitUntil(() => timeline.starts().length === 2, "5 seconds", "leadership resumes")
      yield* report("database back -> effect running again", timeline.starts()[1]!.at - upAt)
      assert.isAtMost(timeline.starts()[1]!.at - upAt, poll + fence + 500)
      assertNoOverlap(timeline.events)
    }))

  it.scoped("a holder whose connection stops answering stops its effect, and the other node takes over", () =>
    Effect.gen(function*() {
      const proxy = yield* proxyTo
      const stalled = yield* nodeThrough(proxy)
      const name = "stalled"
      const timeline = makeTimeline()
      yield* Singleton.run(name, timeline.guarded("stalled"), options).pipe(
        Effect.provide(stalled),
        Effect.annotateLogs("node", "stalled"),
        Effect.forkScoped
      )
      yield* waitUntil(() => timeline.starts().length === 1, "5 seconds", "the proxied node leads")
      const healthy = yield* startNode("healthy")
      yield* healthy.fork(name, timeline.guarded("healthy"))
      yield* Effect.sleep(Duration.millis(2 * verify))

      // No error, no close: only the missing answer to a check can reveal the loss.
      const stalledAt = yield* now
      yield* proxy.stall
      yield* waitUntil(() => timeline.stops().length === 1, "5 seconds", "the stalled holder stops")
      yield* waitUntil(() => timeline.starts().length === 2, "5 seconds", "the healthy node starts")
      const stoppedAt = timeline.stops()[0]!.at
      yield* report("stalled connection -> old holder's effect interrupted", stoppedAt - stalledAt)
      yield* report("stalled connection -> effect started on the other node", timeline.starts()[1]!.at - stalledAt)
      assert.isAtMost(stoppedAt - stalledAt, verify + verify / 2 + 100)
      // The server keeps the stalled session (and its lock) until its idle_session_timeout ends it.
      const idleTimeout = 2 * Math.max(poll, verify) + 1000
      assert.isAtMost(timeline.starts()[1]!.at - stalledAt, idleTimeout + poll + fence + 500)
      assert.strictEqual(timeline.starts()[1]!.node, "healthy")
      assert.strictEqual(logsOf("singleton lost", "stalled")[0]?.annotations.reason, "statement timed out")
      assertNoOverlap(timeline.events)
    }))

  it.scoped("many verify cycles keep exactly one lock entry, and release leaves none", () =>
    Effect.gen(function*() {
      const name = "cycles"
      const timeline = makeTimeline()
      const node = yield* startNode("cycles")
      const fast = { pollInterval: Duration.millis(50), verifyInterval: Duration.millis(100) }
      yield* node.fork(name, timeline.guarded("cycles"), fast)
      yield* waitUntil(() => timeline.starts().length === 1, "5 seconds", "the node leads")

      const pids = new Set<number>()
      for (let sample = 0; sample < 30; sample++) {
        const entries = yield* lockEntries(name)
        assert.strictEqual(entries.length, 1)
        assert.isTrue(entries[0]!.granted)
        pids.add(entries[0]!.pid)
        yield* Effect.sleep(Duration.millis(50))
      }
      assert.strictEqual(pids.size, 1, "held on one connection throughout")
      yield* node.close
      assert.strictEqual((yield* lockEntries(name)).length, 0)
    }))

  it.scoped("the lock is taken once per session: one unlock frees it while the connection stays open", () =>
    Effect.gen(function*() {
      const { url } = yield* Database
      const name = "not-stacked"
      const testScope = yield* Effect.scope
      const connections: Array<internal.LockConnection> = []
      // The connections outlive each run, so only the run's unlock (not a closed session) can free the lock.
      const connect: internal.Connect = (connectOptions) =>
        Scope.extend(internal.pgConnect({ url: Redacted.make(url) })(connectOptions), testScope).pipe(
          Effect.tap((connection) => Effect.sync(() => void connections.push(connection)))
        )
      const service = internal.make(connect)
      const fast = { pollInterval: Duration.millis(50), verifyInterval: Duration.millis(100) }

      for (let cycle = 0; cycle < 4; cycle++) {
        const held = yield* service.run(
          name,
          Effect.sleep(Duration.millis(600)).pipe(Effect.zipRight(lockEntries(name))),
          fast
        ).pipe(Effect.timeoutFail({ duration: "5 seconds", onTimeout: () => new Error(`cycle ${cycle} hung`) }))
        assert.strictEqual(held.length, 1)
        assert.strictEqual((yield* lockEntries(name)).length, 0, `cycle ${cycle}: released`)
        // The session that held the lock still answers: the unlock freed it, not the end of the session.
        const alive = yield* connections[cycle]!.query("SELECT $1::text AS ok", ["yes"]).pipe(Effect.orDie)
        assert.deepStrictEqual(alive, [{ ok: "yes" }])
      }
      assert.strictEqual(connections.length, 4)
    }))

  it.scoped("run returns the effect's result or fails with its error, releasing the lock either way", () =>
    Effect.gen(function*() {
      const node = yield* startNode("result")
      const fast = { pollInterval: Duration.millis(50), verifyInterval: Duration.millis(50) }
      assert.strictEqual(yield* node.run("result", Effect.succeed(42), fast), 42)
      assert.strictEqual((yield* lockEntries("result")).length, 0)
      const failed = yield* node.run("result", Effect.fail("boom" as const), fast).pipe(Effect.flip)
      assert.strictEqual(failed, "boom")
      assert.strictEqual((yield* lockEntries("result")).length, 0)

      const fiber = yield* node.fork("result", Effect.never, fast)
      yield* waitUntil(() => logsOf("singleton acquired", "result").length === 3, "5 seconds", "acquired")
      yield* Fiber.interrupt(fiber)
      assert.strictEqual((yield* lockEntries("result")).length, 0)
      assert.strictEqual(logsOf("singleton released", "result").length, 3)
      for (const line of logsOf("singleton acquired", "result")) {
        assert.strictEqual(line.level, "INFO")
        assert.strictEqual(line.annotations.singleton, "result")
        assert.strictEqual(line.annotations.module, "Singleton")
      }
    }))
})

describe("Singleton.layerMemory", () => {
  it.effect("runs one effect per name at a time, names independently, and returns results", () =>
    Effect.gen(function*() {
      const singleton = yield* Singleton.Singleton
      const gate = yield* Deferred.make<void>()
      const order: Array<string> = []
      const first = yield* singleton.run(
        "job",
        Effect.sync(() => order.push("first start")).pipe(
          Effect.zipRight(Deferred.await(gate)),
          Effect.zipRight(Effect.sync(() => order.push("first end"))),
          Effect.as("first")
        )
      ).pipe(Effect.fork)
      yield* Effect.yieldNow()
      const second = yield* singleton.run("job", Effect.sync(() => order.push("second")).pipe(Effect.as("second")))
        .pipe(Effect.fork)
      const other = yield* singleton.run("other-job", Effect.succeed("other"))
      yield* Effect.yieldNow()
      assert.deepStrictEqual(order, ["first start"])
      assert.strictEqual(other, "other")

      yield* Deferred.succeed(gate, undefined)
      assert.strictEqual(yield* Fiber.join(first), "first")
      assert.strictEqual(yield* Fiber.join(second), "second")
      assert.deepStrictEqual(order, ["first start", "first end", "second"])
      const failed = yield* Singleton.run("job", Effect.fail("boom" as const)).pipe(Effect.flip)
      assert.strictEqual(failed, "boom")
    }).pipe(Effect.provide(Singleton.layerMemory)))
})
