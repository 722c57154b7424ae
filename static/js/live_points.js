// The job page's live series (static/js/job_live.js): every point the websocket brings, keyed by
// (key, step), so a point that comes twice is drawn once and batches may arrive in any order — a batch
// with lower ids that comes after a later one is merged like any other, never skipped.
// The cursor a reconnect resumes from (experiments/tracking/consumers.py): `cursor` is the last
// snapshot's last_id (every stored point up to it is here); the ids that came live since are counted,
// so the server can tell whether any batch in between was lost with the connection.
(function (root) {
  "use strict";

  function LivePoints() {
    this.series = new Map(); // key -> Map(step -> [value, t])
    this.cursor = 0; // every stored point with id <= cursor is here
    this.liveIds = new Set(); // ids > cursor that came live
    this.top = 0; // the highest id seen
  }

  // Adds a point; returns true when its key is new.
  LivePoints.prototype.add = function (key, step, value, t) {
    let points = this.series.get(key);
    const fresh = !points;
    if (fresh) { points = new Map(); this.series.set(key, points); }
    points.set(step, [value, t]);
    return fresh;
  };

  // A snapshot: {series: {key: [[step, value, t]]}, last_id}. Calls onKey(key) for a key not seen before.
  LivePoints.prototype.snapshot = function (data, onKey) {
    for (const [key, points] of Object.entries(data.series || {})) {
      for (const [step, value, t] of points) if (this.add(key, step, value, t) && onKey) onKey(key);
    }
    this.cursor = Math.max(this.cursor, data.last_id || 0);
    for (const id of this.liveIds) if (id <= this.cursor) this.liveIds.delete(id);
    this.top = Math.max(this.top, this.cursor);
  };

  // A live batch: {points: [{id, key, step, value, t}]}, in any order relative to other batches.
  LivePoints.prototype.points = function (data, onKey) {
    for (const p of data.points || []) {
      if (this.add(p.key, p.step, p.value, p.t) && onKey) onKey(p.key);
      if (typeof p.id === "number" && p.id > this.cursor) {
        this.liveIds.add(p.id);
        if (p.id > this.top) this.top = p.id;
      }
    }
  };

  // The websocket query for (re)connecting: after the snapshot's cursor, plus what came live since.
  LivePoints.prototype.query = function () {
    let q = "after=" + this.cursor;
    if (this.liveIds.size) q += "&seen=" + this.liveIds.size + "&upto=" + this.top;
    return q;
  };

  // [[step, value, t]] of a key, by step; null when the key has no points.
  LivePoints.prototype.sorted = function (key) {
    const points = this.series.get(key);
    if (!points) return null;
    return [...points.entries()].sort((a, b) => a[0] - b[0]).map(([s, [v, t]]) => [s, v, t]);
  };

  root.T4DMLivePoints = LivePoints;
  if (typeof module !== "undefined" && module.exports) module.exports = LivePoints;
})(typeof window !== "undefined" ? window : globalThis);
