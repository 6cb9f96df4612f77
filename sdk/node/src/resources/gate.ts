/**
 * The checkpoint gate: does one round of a job meet score thresholds? Computed here from the
 * `trends?group_by=step` answer (each point holds a round's exact averages), so the server needs
 * no gate endpoint; the same rule as the Python SDK's `finetune_lab.client.gate`. A threshold
 * whose metric has no value in the round fails (CI must not pass on a score nobody measured).
 */
import { NotFoundError, ValidationError } from "../errors.js";
import type { GateCheck, GateOp, GateResult, TrendPoint, TrendsResponse } from "../types.js";

/** The round's value of each built-in metric, as `trends` names it. */
const BUILTIN_METRICS: Record<string, (p: TrendPoint) => number | null | undefined> = {
  exact_match: (p) => p.avg_exact_match,
  char_error_rate: (p) => p.avg_char_error_rate,
  length_ratio: (p) => p.avg_length_ratio,
  word_overlap: (p) => p.avg_word_overlap,
  validation_pass_rate: (p) => p.validation_pass_rate,
};
// Built-ins that live in [0, 1]: a threshold outside is a typo (e.g. 90 for 90%), not a gate.
const UNIT_INTERVAL: ReadonlySet<string> = new Set([
  "exact_match",
  "char_error_rate",
  "word_overlap",
  "validation_pass_rate",
]);

export interface GateThresholds {
  /** `{metric: threshold}`: passes when the round's value is >= threshold. */
  min?: Record<string, number>;
  /** `{metric: threshold}`: passes when the round's value is <= threshold. */
  max?: Record<string, number>;
  /** Judge this epoch's last round (default: the job's latest round). */
  epoch?: number;
  /** Judge the round at this step. */
  step?: number;
}

export interface GateSpec {
  thresholds: [string, GateOp, number][];
  epoch: number | undefined;
  step: number | undefined;
}

const show = (value: unknown): string =>
  typeof value === "string" ? JSON.stringify(value) : String(value);

/** `%g`-style: at most 6 significant digits, no trailing zeros. */
const short = (value: number): string => String(Number(value.toPrecision(6)));

function roundRef(name: string, value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new ValidationError(`${name} must be an integer >= 0, got ${show(value)}`);
  }
  return value;
}

/** Check the arguments before any request; ValidationError names the bad one. */
export function gateSpec(options: GateThresholds): GateSpec {
  const thresholds: [string, GateOp, number][] = [];
  for (const op of ["min", "max"] as const) {
    const given: unknown = options[op];
    if (given === undefined || given === null) continue;
    if (typeof given !== "object" || Array.isArray(given)) {
      throw new ValidationError(`${op} must be an object of {metric: threshold}`);
    }
    for (const [metric, value] of Object.entries(given)) {
      if (typeof value !== "number") {
        throw new ValidationError(`${op}[${show(metric)}] must be a number, got ${show(value)}`);
      }
      if (!Number.isFinite(value)) {
        throw new ValidationError(`${op}[${show(metric)}] must be finite, got ${value}`);
      }
      if (UNIT_INTERVAL.has(metric) && (value < 0 || value > 1)) {
        throw new ValidationError(`${op}[${show(metric)}] must be within [0, 1], got ${value}`);
      }
      thresholds.push([metric, op, value]);
    }
  }
  if (thresholds.length === 0) {
    throw new ValidationError("the gate needs at least one threshold in min or max");
  }
  if (options.epoch != null && options.step != null) {
    throw new ValidationError("pass epoch or step, not both");
  }
  return {
    thresholds,
    epoch: roundRef("epoch", options.epoch),
    step: roundRef("step", options.step),
  };
}

/** The latest round, the last round of `epoch`, or the round at `step`. */
function pickRound(jobId: string, points: TrendPoint[], spec: GateSpec): TrendPoint {
  if (points.length === 0) {
    throw new NotFoundError(`job ${jobId} has no predictions yet, so no round to gate`);
  }
  if (spec.step !== undefined) {
    const found = points.filter((p) => p.step === spec.step);
    if (found.length === 0) {
      const steps = points.map((p) => p.step).join(", ");
      throw new NotFoundError(`job ${jobId} has no predictions at step ${spec.step} (steps: ${steps})`);
    }
    return found[found.length - 1]!;
  }
  if (spec.epoch !== undefined) {
    const found = points.filter((p) => p.epoch === spec.epoch);
    if (found.length === 0) {
      const epochs = [...new Set(points.map((p) => p.epoch))].sort((a, b) => a - b).join(", ");
      throw new NotFoundError(
        `job ${jobId} has no predictions in epoch ${spec.epoch} (epochs: ${epochs})`,
      );
    }
    return found[found.length - 1]!;
  }
  return points[points.length - 1]!;
}

/** Apply `spec` to a job's `groupBy: "step"` trends (points in epoch, step order). */
export function evaluateGate(trends: TrendsResponse, spec: GateSpec): GateResult {
  const custom = [...new Set(trends.trends.flatMap((p) => Object.keys(p.metrics ?? {})))].sort();
  const known = new Set([...Object.keys(BUILTIN_METRICS), ...custom]);
  const unknown = [...new Set(spec.thresholds.map(([m]) => m).filter((m) => !known.has(m)))].sort();
  const point = pickRound(trends.job_id, trends.trends, spec);
  if (unknown.length > 0) {
    const listed = [...Object.keys(BUILTIN_METRICS), ...custom].join(", ");
    throw new ValidationError(
      `unknown metric ${unknown.map((m) => `'${m}'`).join(", ")} for job ${trends.job_id}; ` +
        `known: ${listed}`,
    );
  }
  const checks: GateCheck[] = spec.thresholds.map(([metric, op, threshold]) => {
    const read = Object.hasOwn(BUILTIN_METRICS, metric) ? BUILTIN_METRICS[metric] : undefined;
    const value = (read ? read(point) : point.metrics?.[metric]) ?? null;
    if (value === null) {
      return { metric, op, threshold, value, passed: false, reason: `no value for ${metric} in this round` };
    }
    const passed = op === "min" ? value >= threshold : value <= threshold;
    const reason = passed ? null : `${short(value)} ${op === "min" ? "<" : ">"} ${short(threshold)}`;
    return { metric, op, threshold, value, passed, reason };
  });
  return {
    job_id: trends.job_id,
    round: { epoch: point.epoch, step: point.step, sample_count: point.sample_count },
    checks,
    passed: checks.every((c) => c.passed),
  };
}
