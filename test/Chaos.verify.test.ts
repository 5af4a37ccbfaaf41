/**
 * The chaos suite's own checks, on hand-made end states: a clean run passes, and each kind of damage a fault could
 * do (a lost, doubled or reordered message, a message handled twice or skipped, a wrong position...) is reported.
 * Without this, a scenario that passes could mean a blind check.
 */
import { assert, describe, it } from "@effect/vitest"
import { groupMember } from "../src/internal/streamName.js"
import { check, type Expectations, longestStall, type Observed, type Sample } from "./chaos/harness.js"

const streams = ["acct-1", "acct-2", "acct-3", "acct-4"]
const events = 12
const id = (n: number) => `00000000-0000-4000-8000-${n.toString().padStart(12, "0")}`

/** Events n = 0..11 on stream n % 4, delivered in n order; consumers "all" (everything) and "m0"/"m1" (a group). */
const clean = (): Observed => {
  const outbox = Array.from({ length: events }, (_, n) => ({
    id: id(n),
    stream: streams[n % streams.length]!,
    seq: n + 1,
    n,
    sent: true,
    parked: false,
    attempts: 0
  }))
  const messages = outbox.map((row) => ({
    id: row.id,
    streamName: row.stream,
    position: Math.floor(row.n / streams.length),
    globalPosition: row.n + 1
  }))
  const consumer = (keep: (stream: string) => boolean) => {
    const mine = messages.filter((message) => keep(message.streamName))
    return {
      handled: mine.map((message, i) => ({
        id: i + 1,
        event_id: message.id,
        stream: message.streamName,
        position: message.position,
        global_position: message.globalPosition
      })),
      parked: [],
      marks: mine.map((message) => message.id),
      position: mine.length === 0 ? undefined : mine[mine.length - 1]!.globalPosition
    }
  }
  return {
    outbox,
    messages,
    consumers: {
      all: consumer(() => true),
      m0: consumer((stream) => groupMember(stream, 2) === 0),
      m1: consumer((stream) => groupMember(stream, 2) === 1)
    }
  }
}

const expected: Expectations = {
  events,
  consumers: [
    { consumerId: "all" },
    { consumerId: "m0", group: { member: 0, size: 2 } },
    { consumerId: "m1", group: { member: 1, size: 2 } }
  ]
}

type Damage = (observed: Observed) => Observed

const withConsumer =
  (name: string, change: (c: Observed["consumers"][string]) => Observed["consumers"][string]) =>
  (observed: Observed): Observed => ({
    ...observed,
    consumers: { ...observed.consumers, [name]: change(observed.consumers[name]!) }
  })

describe("Chaos checks", () => {
  it("a clean end state has no problems, and both group members got a share", () => {
    const observed = clean()
    assert.deepStrictEqual(check(observed, expected), [])
    assert.isAbove(observed.consumers["m0"]!.handled.length, 0)
    assert.isAbove(observed.consumers["m1"]!.handled.length, 0)
  })

  const damages: ReadonlyArray<readonly [string, Damage, string]> = [
    [
      "an outbox row left unsent",
      (o) => ({ ...o, outbox: o.outbox.map((r, i) => i === 3 ? { ...r, sent: false } : r) }),
      "not sent"
    ],
    [
      "an outbox row parked",
      (o) => ({ ...o, outbox: o.outbox.map((r, i) => i === 3 ? { ...r, parked: true } : r) }),
      "parked"
    ],
    [
      "an event written twice",
      (o) => ({ ...o, outbox: [...o.outbox, { ...o.outbox[0]!, id: id(99), seq: 99 }] }),
      "outbox"
    ],
    [
      "a message delivered twice",
      (o) => ({ ...o, messages: [...o.messages, { ...o.messages[0]!, position: 9, globalPosition: 99 }] }),
      "more than once"
    ],
    ["a message lost", (o) => ({ ...o, messages: o.messages.slice(1) }), "missing"],
    [
      "a foreign message",
      (o) => ({
        ...o,
        messages: [...o.messages, { id: id(77), streamName: "acct-9", position: 0, globalPosition: 77 }]
      }),
      "no outbox row"
    ],
    [
      "a stream reordered",
      (o) => ({
        ...o,
        messages: o.messages.map((m) =>
          m.id === id(0) ? { ...m, position: 1 } : m.id === id(4) ? { ...m, position: 0 } : m
        )
      }),
      "seq order"
    ],
    [
      "a message handled twice",
      withConsumer("all", (c) => ({ ...c, handled: [...c.handled, { ...c.handled[2]!, id: 100 }] })),
      "more than once"
    ],
    ["a message skipped", withConsumer("m0", (c) => ({ ...c, handled: c.handled.slice(1) })), "not handled"],
    [
      "a peer's message handled",
      withConsumer("m0", (c) => ({ ...c, handled: [...c.handled, ...clean().consumers["m1"]!.handled.slice(0, 1)] })),
      "should not have"
    ],
    [
      "a stream handled out of order",
      withConsumer("all", (c) => ({ ...c, handled: [c.handled[4]!, ...c.handled.filter((_, i) => i !== 4)] })),
      "out of stream order"
    ],
    ["a handled message not marked", withConsumer("all", (c) => ({ ...c, marks: c.marks.slice(1) })), "not marked"],
    ["a stale position", withConsumer("m1", (c) => ({ ...c, position: (c.position ?? 0) - 1 })), "saved position"],
    ["no position saved", withConsumer("all", (c) => ({ ...c, position: undefined })), "saved position"],
    ["a message parked that should not be", withConsumer("all", (c) => ({ ...c, parked: [id(5)] })), "parked 1"]
  ]
  for (const [what, damage, mentions] of damages) {
    it(`reports ${what}`, () => {
      const problems = check(damage(clean()), expected)
      assert.isTrue(problems.some((problem) => problem.includes(mentions)), JSON.stringify(problems))
    })
  }

  it("holds a stopping consumer to the messages before its poison, and a parking one to parking it", () => {
    const observed = clean()
    const poison = observed.messages[6]!
    const before = observed.consumers["all"]!.handled.filter((row) => row.global_position < poison.globalPosition)
    const stopped: Observed = {
      ...observed,
      consumers: {
        stopper: {
          handled: before,
          parked: [],
          marks: before.map((row) => row.event_id),
          position: before[before.length - 1]!.global_position
        },
        parker: {
          ...observed.consumers["all"]!,
          handled: observed.consumers["all"]!.handled.filter((row) => row.event_id !== poison.id),
          parked: [poison.id]
        }
      }
    }
    const spec: Expectations = {
      events,
      consumers: [{ consumerId: "stopper", stopsAt: 6 }, { consumerId: "parker", parked: [6] }]
    }
    assert.deepStrictEqual(check(stopped, spec), [])

    const skipped = withConsumer("stopper", (c) => ({
      ...c,
      handled: [...c.handled, observed.consumers["all"]!.handled[8]!]
    }))(stopped)
    assert.isNotEmpty(check(skipped, spec), "a message past the poison was handled")
  })

  it("measures the longest stall after a fault, past the work already in flight", () => {
    const at = (t: number, sent: number, written = 100): Sample => ({ t, written, sent, handled: {} })
    // Fault at t=1000; one in-flight delivery lands at 1100, then nothing until 4000.
    const samples = [at(900, 10), at(1000, 10), at(1100, 11), at(2000, 11), at(3000, 11), at(4000, 12), at(4100, 20)]
    const stall = longestStall(samples, 1000, (s) => s.sent, (s) => s.written > s.sent, 5000)
    assert.deepStrictEqual(stall, { longestMs: 2900, resumedAfterMs: 3000 })
    const idle = longestStall(samples, 1000, (s) => s.sent, () => false, 5000)
    assert.deepStrictEqual(idle, { longestMs: 0, resumedAfterMs: 0 })
  })
})
