import { defineConfig } from 'drizzle-kit';

// drizzle-kit reads the schema and writes SQL migrations into migrations/ (`npm run db:generate`).
// The server and the CLI apply them on open; never edit a generated file by hand.
export default defineConfig({
  dialect: 'sqlite',
  schema: './src/storage/sqlite/schema.ts',
  out: './migrations',
});
