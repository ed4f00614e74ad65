// Metric names in PromQL expressions, for the tests that keep rules and dashboards true to /metrics.
const NOT_METRICS = new Set(['sum', 'rate', 'increase', 'deriv', 'and', 'or', 'unless', 'offset', 'by', 'without', 'max', 'min', 'avg', 'histogram_quantile', 'le']);

export function metricsIn(exprs: string[]): Set<string> {
  const names = new Set<string>();
  for (const expr of exprs) {
    const bare = expr
      .replace(/\{[^}]*\}/g, ' ')
      .replace(/\b(by|without) \([^)]*\)/g, ' ')
      .replace(/\[[^\]]*\]/g, ' ')
      .replace(/\boffset \w+/g, ' ');
    for (const [name] of bare.matchAll(/[a-z_][a-z0-9_:]*/g)) if (!NOT_METRICS.has(name) && !name.includes(':')) names.add(name);
  }
  return names;
}
