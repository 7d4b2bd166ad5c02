// What the lbprobe dashboards share, given the mixin's _config: the dashboard with its datasource
// and cluster variables, label matchers, aggregation labels, state colours and links between the
// dashboards.
local g = import '../lib/dashboard.libsonnet';

function(c) {
  local cl = c.clusterLabel,

  // Matchers of lbprobe's series in the selected cluster, then `extra` (a list of matchers).
  m(extra=[]):: std.join(', ', std.filter(function(s) s != '', [c.lbprobeSelector, '%s=~"$cluster"' % cl] + extra)),
  // Matchers of the recording rules' series: aggregated, they have no job label.
  rm(extra=[]):: std.join(', ', ['%s=~"$cluster"' % cl] + extra),

  // An aggregation's labels: the cluster's, then `labels`. Aggregations across lbprobe instances
  // (of state series, the same from every instance, or "the worst any instance sees") use it.
  by(labels):: std.join(', ', [cl] + labels),
  // The labels that tell lbprobe instances apart (c.instanceLabels) then `labels`: one series per
  // instance, which may each see something else (a LAN host, an in-cluster pod).
  byInstance(labels):: self.by(c.instanceLabels + labels),
  // Those labels but job, which the selector mostly fixes: the instance's legend and table columns.
  instanceLabels:: [l for l in c.instanceLabels if l != 'job'],
  instance:: std.join(' ', ['{{%s}}' % l for l in self.instanceLabels]),

  // A table (see g.labelTable) with the cluster column when the dashboards show several clusters,
  // and without the job column unless `labels` has it.
  labelTable(title, labels, columns, labelProps={}, description='')::
    local hide = (if std.member(labels, 'job') then [] else ['job'])
                 + (if c.showMultiCluster then [] else [cl]);
    g.labelTable(title, (if c.showMultiCluster then [cl] else []) + labels, columns, hide, labelProps, description),

  // States of 0/1 series, coloured in stats, timelines and table cells.
  state(ok, fail, good=1):: g.valueMappings({
    [std.toString(good)]: [ok, 'green'],
    [std.toString(1 - good)]: [fail, 'red'],
  }),
  okFail:: self.state('OK', 'FAIL'),
  // A labelTable column of a 0/1 series, its cell filled green or red.
  stateColumn(title, expr, ok='OK', fail='FAIL', good=1)::
    g.column(title, expr, g.colorBackground { mappings: $.state(ok, fail, good) }),

  // "How many things fail": a stat that is green at 0 and `color` from 1 on. `expr` counts them and
  // has no series when nothing fails, hence `or vector(0)`.
  countStat(title, expr, description, color='red')::
    g.stat(title, [g.target('%s or vector(0)' % expr)], description)
    + g.thresholds(g.steps([['green', null], [color, 1]])),
  // A count of things rather than of failures (how many IPs, Gateways, …).
  totalStat(title, expr, description)::
    g.stat(title, [g.target('%s or vector(0)' % expr)], description)
    + g.thresholds(g.steps([['blue', null]])),
  // A ratio of probes that succeeded, from an availability recording rule.
  availabilityStat(title, expr, description)::
    g.stat(title, [g.target(expr)], description)
    + g.unit('percentunit') + g.decimals(3) + g.min(0) + g.max(1)
    + g.thresholds(self.availabilitySteps),
  availabilitySteps:: g.steps([['red', null], ['orange', 0.99], ['green', 0.999]]),
  // The availability recording rule of `level` and `metric` for each configured window, e.g.
  // namespace_service:loadbalancer_reachable:avg_over_time_1h.
  availabilityRules(level, metric):: [
    { window: w, rule: '%s:%s:avg_over_time_%s' % [level, metric, w] }
    for w in c.availabilityWindows
  ],
  // labelTable columns of those rules' series matching `matchers`, one per window.
  availabilityColumns(level, metric, matchers=[]):: [
    g.column(
      r.window,
      '%s{%s}' % [r.rule, self.rm(matchers)],
      g.colorText { unit: 'percentunit', decimals: 3, thresholds: $.availabilitySteps },
    )
    for r in self.availabilityRules(level, metric)
  ],
  // The last configured window (the longest by default): availability tables sort by it.
  lastWindow:: c.availabilityWindows[std.length(c.availabilityWindows) - 1],

  // A link to another lbprobe dashboard (its key in c.dashboardUIDs) that keeps the time range,
  // the datasource and the cluster, and sets the variables in `vars` ({ name: value }).
  dashboardURL(key, vars)::
    '/d/%s/?${__url_time_range}&${datasource:queryparam}&${cluster:queryparam}' % c.dashboardUIDs[key]
    + std.join('', ['&var-%s=%s' % [v, vars[v]] for v in std.objectFields(vars)]),
  // Link properties for a table column: the other dashboard of the row's labels.
  rowLink(title, key, labels):: {
    links: [g.link(title, $.dashboardURL(key, { [l]: '${__data.fields.%s}' % l for l in labels }))],
  },

  // A dashboard of the mixin: title prefix, uid, tags, refresh and timezone from the config, a
  // datasource and a cluster variable before `variables`, and links to the other lbprobe dashboards.
  dashboard(key, title, description, variables, panels)::
    g.dashboard(
      c.dashboardNamePrefix + title,
      c.dashboardUIDs[key],
      description,
      c.dashboardTags,
      c.dashboardRefresh,
      c.dashboardTimezone,
    )
    + g.withTagLinks('lbprobe dashboards', c.dashboardTags)
    + g.withVariables([
      g.datasourceVariable(),
      // Shown with c.showMultiCluster (one cluster at a time); hidden otherwise, when it selects
      // every series ('.*'), with or without the cluster label.
      g.queryVariable(
        'cluster',
        'Cluster',
        'label_values(up{%s}, %s)' % [c.lbprobeSelector, cl],
        includeAll=!c.showMultiCluster,
        allValue=if c.showMultiCluster then null else '.*',
        hide=!c.showMultiCluster,
      ),
    ] + variables)
    + g.withPanels(panels),
}
