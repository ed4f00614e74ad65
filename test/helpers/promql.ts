// Metric names in PromQL expressions, for the tests that keep rules and dashboards true to /metrics.
const NOT_METRICS = new Set([
  'sum', 'rate', 'increase', 'deriv', 'and', 'or', 'unless', 'offset', 'by', 'without', 'on', 'max', 'min', 'avg',
  'histogram_quantile', 'le', 'time', 'label_replace', 'vector',
]);

export function metricsIn(exprs: string[]): Set<string> {
  const names = new Set<string>();
  for (const expr of exprs) {
    const bare = expr
      .replace(/"[^"]*"/g, ' ')
      .replace(/\{[^}]*\}/g, ' ')
      .replace(/\b(by|without|on|ignoring) \([^)]*\)/g, ' ')
      .replace(/\[[^\]]*\]/g, ' ')
      .replace(/\$__\w+/g, ' ')
      .replace(/\boffset \w+/g, ' ');
    for (const [name] of bare.matchAll(/[a-z_][a-z0-9_:]*/g)) if (!NOT_METRICS.has(name) && !name.includes(':')) names.add(name);
  }
  return names;
}
