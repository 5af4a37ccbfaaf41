import * as SqlClient from "@effect/sql/SqlClient"
import { assert, describe, it } from "@effect/vitest"
import * as Effect from "effect/Effect"
import * as PgTest from "./support/PgTest.js"

describe("test harness", () => {
  it.layer(PgTest.layer)((it) => {
    it.effect("gives each file a fresh, empty database on a real server", () =>
      Effect.gen(function*() {
        const sql = yield* SqlClient.SqlClient
        const tables = yield* sql<{ count: string }>`
          SELECT count(*)::text AS count FROM information_schema.tables WHERE table_schema = 'public'
        `
        assert.strictEqual(tables[0]?.count, "0")
        const [{ db }] = (yield* sql<{ db: string }>`SELECT current_database() AS db`) as [{ db: string }]
        assert.match(db, /^kit_/)
      }))
  })
})
