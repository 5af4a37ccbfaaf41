import { assert, layer } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"
import { EventoClient } from "../src/EventoClient.js"
import * as EventoClientModule from "../src/EventoClient.js"
import * as FaultProxy from "../src/FaultProxy.js"
import * as Outbox from "../src/Outbox.js"
import * as OutboxSender from "../src/OutboxSender.js"
import * as Singleton from "../src/Singleton.js"
import {
  allSent,
  eventually,
  freshCategory,
  makeEnv,
  mismatches,
  quick,
  rowOf,
  rowsOf,
  TestLayer
} from "./OutboxSender.support.js"
import * as EventoTest from "./support/EventoTest.js"

layer(TestLayer, { excludeTestServices: true, timeout: "60 seconds" })("OutboxSender.layer", (it) => {
  it.scoped("of two sender layers for one namespace one sends, a notification beats the poll, the other takes over", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const target = yield* EventoTest.EventoTarget
      // Each "process" reaches EventoDB through a proxy of its own, so the proxies tell who sent.
      const proxyB = yield* FaultProxy.make({ upstream: target.url })
      const clientB = yield* Effect.orDie(EventoClientModule.make({ url: proxyB.url, token: env.token }))
      const options = { ...quick, pollInterval: "10 seconds" } as const
      const node = (client: EventoClient.Service) =>
        OutboxSender.layer(options).pipe(
          Layer.provide(Singleton.layer),
          Layer.provide(Layer.succeed(EventoClient, client))
        )
      const scopeA = yield* Scope.make()
      const scopeB = yield* Scope.make()
      yield* Effect.addFinalizer(() => Effect.all([Scope.close(scopeA, Exit.void), Scope.close(scopeB, Exit.void)]))
      yield* Layer.buildWithScope(node(env.client), scopeA)
      yield* Layer.buildWithScope(node(clientB), scopeB)
      const category = freshCategory("single")
      const write = (n: number) => env.provide(Outbox.write(`${category}-${n % 3}`, { type: "Noted", data: { n } }))

      // The first row goes out when a leader has started (its first pass runs at once).
      const first = yield* write(0)
      yield* eventually("a leader sent the first row", Effect.map(rowOf(first), (row) => row.sent), "30 seconds")

      // The poll comes every 10 seconds; each of these must come through the notification.
      for (let n = 1; n <= 3; n++) {
        const id = yield* write(n)
        const start = Date.now()
        yield* eventually(
          "the notified row went out",
          Effect.map(rowOf(id), (row) => row.sent),
          "1 second",
          "10 millis"
        )
        assert.isBelow(Date.now() - start, 1000)
        yield* Effect.sleep("200 millis")
      }

      const requestsA = (yield* env.proxy.requests).length
      const requestsB = (yield* proxyB.requests).length
      assert.isTrue(
        (requestsA > 0 && requestsB === 0) || (requestsA === 0 && requestsB > 0),
        `exactly one node sends (A: ${requestsA}, B: ${requestsB})`
      )
      const [leader, standby] = requestsA > 0 ? [scopeA, proxyB] : [scopeB, env.proxy]

      // The leader goes away; the standby wins the lock and picks up what is written meanwhile.
      yield* Scope.close(leader, Exit.void)
      for (let n = 4; n < 10; n++) yield* write(n)
      yield* eventually("the standby took over", allSent(env.namespace), "30 seconds")
      assert.isAbove((yield* standby.requests).length, 0)
      assert.deepStrictEqual(yield* mismatches(env.namespace, env.direct), [])
    }))

  it.scoped("interrupting the sender mid-batch stops it quickly; what it marked is in EventoDB; a restart completes", () =>
    Effect.gen(function*() {
      const env = yield* makeEnv()
      const category = freshCategory("shutdown")
      yield* env.provide(Outbox.writeBatch(Array.from({ length: 80 }, (_, n) => ({
        stream: `${category}-${n % 8}`,
        message: { type: "Step", data: { n } },
        options: n % 8 < 4 ? { expectedVersion: Math.floor(n / 8) - 1 } : {}
      }))))
      yield* env.proxy.latency("100 millis")
      const scope = yield* Scope.make()
      yield* env.provide(OutboxSender.run(quick)).pipe(Effect.forkIn(scope))
      const delivered = env.direct.categoryGet(category, { batchSize: -1 }).pipe(
        Effect.map((messages) => new Set(messages.map((message) => message.id))),
        Effect.orDie
      )
      yield* eventually("some rows went out", Effect.map(delivered, (ids) => ids.size >= 10), "20 seconds", "10 millis")

      const start = Date.now()
      yield* Scope.close(scope, Exit.void)
      // Singleton gives a stopping leader half its verify interval (1 second by default).
      assert.isBelow(Date.now() - start, 1000)

      const inEvento = yield* delivered
      const rows = yield* rowsOf(env.namespace)
      assert.isTrue(rows.filter((row) => row.sent).every((row) => inEvento.has(row.id)), "marked rows were delivered")
      assert.isBelow(rows.filter((row) => row.sent).length, 80)
      yield* env.proxy.latency(0)

      yield* env.provide(OutboxSender.drain)

      assert.isTrue(yield* allSent(env.namespace))
      assert.deepStrictEqual(yield* mismatches(env.namespace, env.direct), [])
    }))
})
