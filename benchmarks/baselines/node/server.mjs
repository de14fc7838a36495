// The Node.js baseline of the stdio scenario (benchmarks/scenarios/stdio.py):
// the stateful MCP server actorstate replaces, written the usual way with the
// official TypeScript SDK.
//
// McpServer on the SDK's stdio transport, sessions in a Map, a promise-chain
// lock per session, nothing persisted: a process that exits loses every
// session. The tools take the same arguments and give the same replies (text
// and structuredContent) as actorstate's (actorstate/transport/tools.py), so
// the benchmark's client drives both with the same requests and checks both
// the same way. Of actorstate's limits it keeps the two that shape replies,
// the event cap and the range of maxTurns; the byte limits on keys, values
// and sessions are left out, as valid calls of the benchmark never reach them.
//
//     npm ci && node server.mjs      (speaks MCP on stdin/stdout)

import { randomUUID } from "node:crypto";

import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

// actorstate's defaults (Config.max_events, max_turns_limit, default_max_turns):
// a session keeps its last MAX_EVENTS events, get_context shows up to
// MAX_TURNS_LIMIT of them.
const MAX_EVENTS = 100;
const MAX_TURNS_LIMIT = 50;
const DEFAULT_MAX_TURNS = 10;
// Caller input quoted in an error is cut to this many characters, as actorstate does.
const QUOTED_INPUT_CHARS = 60;

const NOT_FOUND = "Session not found or expired";

/** @type {Map<string, {clientId: string, metadata: Record<string, unknown>, events: object[], totalEvents: number}>} */
const sessions = new Map();

/** @type {Map<string, Promise<void>>} the tail of each session's chain of turns */
const tails = new Map();

/**
 * Run `turn` once every turn queued before it on the same session has
 * settled, and return its result. A turn that throws does not block the
 * ones after it. The tail is dropped when nothing is queued behind it, so
 * the Map holds only sessions with work in flight.
 */
function withSessionLock(sessionId, turn) {
  const previous = tails.get(sessionId) ?? Promise.resolve();
  const result = previous.then(turn);
  const tail = result.then(
    () => undefined,
    () => undefined,
  );
  tails.set(sessionId, tail);
  tail.then(() => {
    if (tails.get(sessionId) === tail) tails.delete(sessionId);
  });
  return result;
}

function clipped(text) {
  return text.length <= QUOTED_INPUT_CHARS ? text : text.slice(0, QUOTED_INPUT_CHARS - 3) + "...";
}

/** A string quoted the way Python's repr quotes it, since actorstate's messages do. */
function quoted(text) {
  if (text.includes("'") && !text.includes('"')) return `"${text}"`;
  return `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
}

/** The Python type name actorstate's messages give for a JSON value. */
function typeName(value) {
  if (value === null) return "NoneType";
  if (Array.isArray(value)) return "list";
  return { string: "str", number: "float", boolean: "bool", object: "dict" }[typeof value];
}

/**
 * The canonical form (lowercase, hyphenated) of a session id written any way
 * Python's uuid.UUID reads it: with or without hyphens, braces or a "urn:uuid:"
 * prefix, in either case. Replies name a session by this form, as actorstate's do.
 */
function canonicalId(sessionId) {
  const hex = sessionId.replace("urn:", "").replace("uuid:", "").replace(/^[{}]+|[{}]+$/g, "").replaceAll("-", "");
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) {
    throw new Error(`session id must be a UUID, not ${clipped(quoted(sessionId))}`);
  }
  const h = hex.toLowerCase();
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/**
 * Run `turn(session, id)` under the session's lock; an unknown or ended
 * session is refused with actorstate's one message for both.
 */
function onSession(sessionId, turn) {
  const id = canonicalId(sessionId);
  return withSessionLock(id, () => {
    const session = sessions.get(id);
    if (session === undefined) throw new Error(NOT_FOUND);
    return turn(session, id);
  });
}

function appendEvent(session, type, payload) {
  session.events.push({ type, payload, time: new Date().toISOString() });
  if (session.events.length > MAX_EVENTS) session.events.splice(0, session.events.length - MAX_EVENTS);
  session.totalEvents += 1;
}

/**
 * A tool result as actorstate gives it: the text, the same facts as
 * structuredContent, and an explicit isError false.
 */
function reply(text, structured) {
  return { content: [{ type: "text", text }], isError: false, structuredContent: structured };
}

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

// -- schemas: the JSON Schemas of tools.py, as zod writes them ---------------------

const sessionIdArg = z.string().meta({ format: "uuid", description: "the id create_session returned" });
// zod 4 makes a z.unknown() key required (null allowed), as actorstate's `value` is.
const anyJson = z.unknown().meta({ description: "any JSON value (usually a string)" });
const total = z.number().int().min(0);
const event = z.strictObject({
  type: z.string(),
  payload: z.record(z.string(), z.unknown()),
  time: z.string().meta({ format: "date-time" }),
});
const metadata = z.record(z.string(), z.unknown());

// -- the server --------------------------------------------------------------------

const server = new McpServer({ name: "node-baseline", version: "1.0.0" });

server.registerTool(
  "create_session",
  {
    description: "Start a new tracked session for multi-turn interactions",
    inputSchema: z.strictObject({
      clientId: z.string().describe("a label that groups sessions (not a password)").optional(),
    }),
    outputSchema: z.strictObject({ sessionId: z.string(), message: z.string() }),
  },
  async ({ clientId }) => {
    const sessionId = randomUUID();
    // Metadata keys are the caller's: a prototype-free object lets "__proto__" be one.
    const session = { clientId: clientId ?? "anonymous", metadata: Object.create(null), events: [], totalEvents: 0 };
    sessions.set(sessionId, session);
    const result = { sessionId, message: "Session created. Use this sessionId in subsequent tool calls." };
    return reply(pretty(result), result);
  },
);

server.registerTool(
  "add_context",
  {
    description: "Add context to the session: sets metadata[key] and records a context event",
    inputSchema: z.strictObject({ sessionId: sessionIdArg, key: z.string(), value: anyJson }),
    outputSchema: z.strictObject({ sessionId: z.string(), totalEvents: total }),
  },
  async ({ sessionId, key, value }) =>
    onSession(sessionId, (session, id) => {
      session.metadata[key] = value;
      appendEvent(session, "context", { key, value });
      return reply(`Context added. Session has ${session.totalEvents} events.`, {
        sessionId: id,
        totalEvents: session.totalEvents,
      });
    }),
);

server.registerTool(
  "record_action",
  {
    description: "Record an action and its result in the session history",
    inputSchema: z.strictObject({ sessionId: sessionIdArg, action: z.string(), details: z.string().optional() }),
    outputSchema: z.strictObject({ sessionId: z.string(), totalEvents: total }),
  },
  async ({ sessionId, action, details }) =>
    onSession(sessionId, (session, id) => {
      appendEvent(session, "action", { action, details: details ?? "" });
      return reply(`Action recorded. Total events in session: ${session.totalEvents}`, {
        sessionId: id,
        totalEvents: session.totalEvents,
      });
    }),
);

server.registerTool(
  "get_context",
  {
    description: "Retrieve conversation context for the session",
    inputSchema: z.strictObject({
      sessionId: sessionIdArg,
      maxTurns: z.number().int().min(1).max(MAX_TURNS_LIMIT).default(DEFAULT_MAX_TURNS),
    }),
    outputSchema: z.strictObject({
      sessionId: z.string(),
      totalEvents: total,
      metadata,
      recentEvents: z.array(event),
    }),
  },
  async ({ sessionId, maxTurns }) =>
    onSession(sessionId, (session, id) => {
      // A deep copy, as actorstate's reply is: later turns must not change a
      // reply the SDK has not written yet.
      const context = structuredClone({
        sessionId: id,
        totalEvents: session.totalEvents,
        metadata: session.metadata,
        recentEvents: session.events.slice(-maxTurns),
      });
      return reply(pretty(context), context);
    }),
);

server.registerTool(
  "set_preference",
  {
    description: "Store a user preference in the session metadata",
    inputSchema: z.strictObject({ sessionId: sessionIdArg, key: z.string(), value: anyJson }),
    outputSchema: z.strictObject({ sessionId: z.string(), metadata }),
  },
  async ({ sessionId, key, value }) =>
    onSession(sessionId, (session, id) => {
      session.metadata[key] = value;
      const copy = structuredClone(session.metadata);
      return reply(`Preference set. Current metadata: ${JSON.stringify(copy)}`, { sessionId: id, metadata: copy });
    }),
);

server.registerTool(
  "increment_counter",
  {
    description: "Add to an integer counter in the session metadata, atomically",
    inputSchema: z.strictObject({
      sessionId: sessionIdArg,
      key: z.string().default("counter"),
      by: z.number().int().default(1),
    }),
    outputSchema: z.strictObject({ sessionId: z.string(), key: z.string(), value: z.number().int() }),
  },
  async ({ sessionId, key, by }) =>
    onSession(sessionId, (session, id) => {
      const current = key in session.metadata ? session.metadata[key] : 0;
      if (!Number.isInteger(current)) {
        throw new Error(`metadata ${quoted(key)} holds a ${typeName(current)}, not an integer counter`);
      }
      const value = current + by;
      // JavaScript numbers hold integers exactly only up to 2**53 (actorstate's
      // counters are 64-bit): refuse rather than answer a rounded count.
      if (!Number.isSafeInteger(value)) {
        throw new Error(`counter ${quoted(key)} would leave the exact integer range (${current} + ${by})`);
      }
      session.metadata[key] = value;
      return reply(`Counter: ${value}`, { sessionId: id, key, value });
    }),
);

server.registerTool(
  "end_session",
  {
    description: "End an active session and clean up resources",
    inputSchema: z.strictObject({ sessionId: sessionIdArg }),
    outputSchema: z.strictObject({ sessionId: z.string(), ended: z.boolean() }),
  },
  async ({ sessionId }) =>
    onSession(sessionId, (session, id) => {
      sessions.delete(id);
      return reply("Session ended and cleaned up.", { sessionId: id, ended: true });
    }),
);

// Logs go to stderr: stdout carries only the protocol. The process ends at
// end of input, once nothing is left to answer.
await server.connect(new StdioServerTransport());
console.error(`node baseline: serving MCP on stdio (node ${process.version})`);
