// An account's usage, one line per task (GET /api/v1/usage/tasks, and the operator's
// GET /admin/v1/accounts/{id}/usage/tasks: the same lines), as table columns.
import { el, n, when } from "./console.js";

const status = (s) => el("span", { class: `status-${s}` }, s);
const sizeOf = (r) => `${r.size} · ${r.resolution} × ${r.n}`;

export const TASK_COLUMNS = [
  ["Time", (r) => when(r.created_at)],
  ["Model", (r) => r.model],
  ["Size", sizeOf],
  ["Quality", (r) => r.quality || "—"],
  ["Reserved", (r) => n(r.reserved), "num"],
  ["Charged", (r) => n(r.charged), "num"],
  ["Refunded", (r) => n(r.refunded), "num"],
  ["Status", (r) => status(r.status)],
  ["Price row", (r) => r.price_id || "—"],
  ["Task", (r) => el("code", {}, r.task_id)],
];
