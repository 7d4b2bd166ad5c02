// A small model of Grafana dashboards (schemaVersion 39) in plain jsonnet: just what the lbprobe
// dashboards use. Panels are built without a position; `withPanels` lays them out left to right and
// top to bottom, in the order given, and numbers them. Modifiers (`size`, `unit`, `mappings`, …) are
// objects to add to a panel:  g.timeseries('Latency', [g.target('…')]) + g.unit('s') + g.size(8, 8)
local width = 24;  // Grafana's grid is 24 columns wide.

// refId of the i-th query of a panel: A, B, C, …
local refId(i) = std.char(std.codepoint('A') + i);

// [{id, value}] from an object of field config properties ({ unit: 's', 'custom.width': 80 }).
local properties(props) = [{ id: k, value: props[k] } for k in std.objectFields(props)];

// Places `panels` on the grid: each panel takes its gridPos.w × gridPos.h at the right of the
// previous one, or at the start of a new line when the line is full; a line starts below the
// tallest panel of the line before, so no two panels overlap. A row takes a line of its own.
local layout(panels) =
  local place(state, p) =
    if p.type == 'row' then
      state {
        x: 0,
        y: state.bottom + 1,
        bottom: state.bottom + 1,
        out+: [p { gridPos: { x: 0, y: state.bottom, w: width, h: 1 } }],
      }
    else
      local wrap = state.x + p.gridPos.w > width;
      local x = if wrap then 0 else state.x;
      local y = if wrap then state.bottom else state.y;
      state {
        x: x + p.gridPos.w,
        y: y,
        bottom: std.max(state.bottom, y + p.gridPos.h),
        out+: [p { gridPos: { x: x, y: y, w: p.gridPos.w, h: p.gridPos.h } }],
      };
  local placed = std.foldl(place, panels, { x: 0, y: 0, bottom: 0, out: [] }).out;
  [placed[i] { id: i + 1 } for i in std.range(0, std.length(placed) - 1)];

{
  // Every panel and every query reads the dashboard's datasource variable.
  datasource:: { type: 'prometheus', uid: '${datasource}' },

  dashboard(title, uid, description='', tags=[], refresh='30s', timezone='utc', from='now-6h'):: {
    annotations: {
      list: [{
        builtIn: 1,
        datasource: { type: 'grafana', uid: '-- Grafana --' },
        enable: true,
        hide: true,
        iconColor: 'rgba(0, 211, 255, 1)',
        name: 'Annotations & Alerts',
        type: 'dashboard',
      }],
    },
    description: description,
    editable: true,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,  // shared crosshair
    links: [],
    panels: [],
    refresh: refresh,
    schemaVersion: 39,
    tags: tags,
    templating: { list: [] },
    time: { from: from, to: 'now' },
    timepicker: {},
    timezone: timezone,
    title: title,
    uid: uid,
    version: 1,
    weekStart: '',
  },

  withVariables(variables):: { templating+: { list+: variables } },
  withPanels(panels):: { panels+: layout(panels) },

  // A drop-down of the dashboards that have all of `tags`, keeping the time range and variables.
  withTagLinks(title, tags):: {
    links+: [{
      title: title,
      type: 'dashboards',
      tags: tags,
      asDropdown: true,
      includeVars: true,
      keepTime: true,
      icon: 'external link',
      targetBlank: false,
      tooltip: '',
      url: '',
    }],
  },

  // Variables.

  datasourceVariable(name='datasource', label='Data source'):: {
    name: name,
    label: label,
    type: 'datasource',
    query: 'prometheus',
    regex: '',
    current: {},
    options: [],
    hide: 0,
    refresh: 1,
    includeAll: false,
    multi: false,
    skipUrlSync: false,
  },

  // A variable of the values of a label: query is `label_values(<selector>, <label>)`. `allValue`
  // (with includeAll) replaces the list of every value, e.g. '.*'.
  queryVariable(name, label, query, multi=false, includeAll=false, allValue=null, hide=false):: {
    name: name,
    label: label,
    type: 'query',
    datasource: $.datasource,
    definition: query,
    query: { query: query, refId: 'PrometheusVariableQueryEditor-VariableQuery' },
    regex: '',
    sort: 1,  // alphabetical
    refresh: 2,  // on time range change
    current: if includeAll then { selected: true, text: 'All', value: '$__all' } else {},
    options: [],
    hide: if hide then 2 else 0,
    multi: multi,
    includeAll: includeAll,
    [if allValue != null then 'allValue']: allValue,
    skipUrlSync: false,
  },

  // Queries.

  target(expr, legendFormat='', instant=false):: {
    datasource: $.datasource,
    editorMode: 'code',
    expr: expr,
    legendFormat: legendFormat,
    instant: instant,
    range: !instant,
    format: 'time_series',
  },
  // An instant query whose result is a table: a column per label, the value in `Value`.
  tableTarget(expr):: self.target(expr, instant=true) { format: 'table' },

  // Panels.

  row(title):: {
    type: 'row',
    title: title,
    collapsed: false,
    datasource: $.datasource,
    panels: [],
    gridPos: { w: width, h: 1 },
  },

  // What every panel has; the queries get their refIds (A, B, …) in order.
  local panel(type, title, targets, description) = {
    type: type,
    title: title,
    description: description,
    datasource: $.datasource,
    targets: [targets[i] { refId: refId(i) } for i in std.range(0, std.length(targets) - 1)],
    fieldConfig: { defaults: {}, overrides: [] },
    options: {},
    gridPos: { w: 12, h: 8 },
  },

  timeseries(title, targets, description=''):: panel('timeseries', title, targets, description) {
    fieldConfig+: {
      defaults+: {
        color: { mode: 'palette-classic' },
        custom: {
          drawStyle: 'line',
          lineInterpolation: 'linear',
          lineWidth: 1,
          fillOpacity: 0,
          showPoints: 'never',
          spanNulls: false,
          stacking: { mode: 'none', group: 'A' },
          thresholdsStyle: { mode: 'off' },
        },
        unit: 'short',
      },
    },
    options: {
      legend: { displayMode: 'list', placement: 'bottom', showLegend: true, calcs: [] },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
  },

  // A single big number per series, coloured by thresholds (or value mappings).
  stat(title, targets, description=''):: panel('stat', title, targets, description) {
    fieldConfig+: {
      defaults+: {
        color: { mode: 'thresholds' },
        thresholds: $.steps([['green', null]]),
        mappings: [],
      },
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      colorMode: 'background',
      graphMode: 'none',
      justifyMode: 'center',
      orientation: 'auto',
      textMode: 'value',
      wideLayout: true,
      showPercentChange: false,
    },
    gridPos: { w: 4, h: 4 },
  },

  barGauge(title, targets, description=''):: panel('bargauge', title, targets, description) {
    fieldConfig+: {
      defaults+: {
        color: { mode: 'thresholds' },
        thresholds: $.steps([['green', null]]),
        min: 0,
      },
    },
    options: {
      reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false },
      orientation: 'horizontal',
      displayMode: 'gradient',
      valueMode: 'color',
      namePlacement: 'auto',
      showUnfilled: true,
      sizing: 'auto',
      minVizHeight: 16,
      minVizWidth: 8,
      maxVizHeight: 300,
    },
  },

  table(title, targets, description=''):: panel('table', title, targets, description) {
    fieldConfig+: {
      defaults+: {
        color: { mode: 'thresholds' },
        thresholds: $.steps([['green', null]]),
        custom: { align: 'auto', cellOptions: { type: 'auto' }, filterable: true, inspect: false },
      },
    },
    options: {
      showHeader: true,
      cellHeight: 'sm',
      footer: { show: false, reducer: ['sum'], countRows: false, fields: '' },
      sortBy: [],
    },
  },

  // One row of coloured bands per series: the value mappings name and colour the states.
  stateTimeline(title, targets, description=''):: panel('state-timeline', title, targets, description) {
    fieldConfig+: {
      defaults+: {
        color: { mode: 'thresholds' },
        thresholds: $.steps([['green', null]]),
        custom: { fillOpacity: 80, lineWidth: 0 },
      },
    },
    options: {
      mergeValues: true,
      showValue: 'never',
      alignValue: 'left',
      rowHeight: 0.9,
      legend: { displayMode: 'list', placement: 'bottom', showLegend: false },
      tooltip: { mode: 'single', sort: 'none' },
    },
  },

  // Like stateTimeline, one cell per sample instead of merged bands.
  statusHistory(title, targets, description=''):: panel('status-history', title, targets, description) {
    fieldConfig+: {
      defaults+: {
        color: { mode: 'thresholds' },
        thresholds: $.steps([['green', null]]),
        custom: { fillOpacity: 80, lineWidth: 0 },
      },
    },
    options: {
      showValue: 'never',
      rowHeight: 0.9,
      colWidth: 0.9,
      legend: { displayMode: 'list', placement: 'bottom', showLegend: false },
      tooltip: { mode: 'single', sort: 'none' },
    },
  },

  // A table with one row per combination of label values. Each column is an instant query
  // (see `column`) whose value becomes the column's title; the queries' rows are merged on the
  // labels they share, so a query may have fewer labels than the others (a Service's lease holder
  // joins every IP of the Service). `labels` orders the label columns; those in `hide` and the
  // queries' Time are dropped. `labelProps` sets field config properties of label columns (links).
  labelTable(title, labels, columns, hide=[], labelProps={}, description=''):: (
    local n = std.length(columns);
    // The Prometheus datasource names the value field `Value` when a panel has one query.
    local value(i) = if n == 1 then 'Value' else 'Value #' + refId(i);
    local shown = [i for i in std.range(0, n - 1) if !columns[i].hidden];
    self.table(title, [self.tableTarget(col.expr) for col in columns], description)
    + self.transformations(
      (if n > 1 then [{ id: 'merge', options: {} }] else [])
      + [{
        id: 'organize',
        options: {
          excludeByName: { Time: true }
                         + { [l]: true for l in hide }
                         + { [value(i)]: true for i in std.range(0, n - 1) if columns[i].hidden },
          indexByName: { [labels[i]]: i for i in std.range(0, std.length(labels) - 1) }
                       + { [value(shown[i])]: std.length(labels) + i for i in std.range(0, std.length(shown) - 1) },
          renameByName: { [value(i)]: columns[i].title for i in shown },
          includeByName: {},
        },
      }]
    )
    + self.overrides(
      [self.override(self.byName(l), labelProps[l]) for l in std.objectFields(labelProps)]
      + [self.override(self.byName(columns[i].title), columns[i].props) for i in shown if columns[i].props != {}]
    )
  ),
  // A column of labelTable: `props` are field config properties ({ unit: 's', mappings: … }).
  column(title, expr, props={}):: { title: title, expr: expr, props: props, hidden: false },
  // A query that brings label columns only (an _info series, value 1).
  labelsOnly(expr):: { title: '', expr: expr, props: {}, hidden: true },

  // Panel modifiers.

  size(w, h):: { gridPos: { w: w, h: h } },
  unit(unit):: { fieldConfig+: { defaults+: { unit: unit } } },
  decimals(decimals):: { fieldConfig+: { defaults+: { decimals: decimals } } },
  min(min):: { fieldConfig+: { defaults+: { min: min } } },
  max(max):: { fieldConfig+: { defaults+: { max: max } } },
  thresholds(steps):: { fieldConfig+: { defaults+: { thresholds: steps } } },
  mappings(mappings):: { fieldConfig+: { defaults+: { mappings: mappings } } },
  overrides(overrides):: { fieldConfig+: { overrides+: overrides } },
  transformations(transformations):: { transformations+: transformations },
  options(options):: { options+: options },
  // The timeseries legend as a table with these reductions (lastNotNull, max, mean, …).
  legendTable(calcs=['lastNotNull', 'max'], placement='bottom'):: {
    options+: { legend+: { displayMode: 'table', placement: placement, calcs: calcs } },
  },
  // How a timeseries draws its thresholds: off, line, dashed, area, line+area, dashed+area.
  thresholdsStyle(mode):: { fieldConfig+: { defaults+: { custom+: { thresholdsStyle: { mode: mode } } } } },
  stacked:: { fieldConfig+: { defaults+: { custom+: { stacking: { mode: 'normal', group: 'A' }, fillOpacity: 30 } } } },
  steppedLines:: { fieldConfig+: { defaults+: { custom+: { lineInterpolation: 'stepAfter' } } } },
  // Sort a table by a column (by its value, not its mapped text).
  sortBy(column, desc=false):: { options+: { sortBy: [{ displayName: column, desc: desc }] } },

  // Field config pieces.

  // Absolute thresholds from [[color, value], …]; the first value is null (the base).
  steps(steps):: { mode: 'absolute', steps: [{ color: s[0], value: s[1] } for s in steps] },
  // Value mappings from { value: [text, color] }, e.g. { '1': ['OK', 'green'], '0': ['FAIL', 'red'] }.
  valueMappings(map):: (
    local values = std.objectFields(map);
    [{
      type: 'value',
      options: {
        [values[i]]: { text: map[values[i]][0], color: map[values[i]][1], index: i }
        for i in std.range(0, std.length(values) - 1)
      },
    }]
  ),
  // A value mapping of the texts that match a regular expression (JavaScript syntax) to a colour,
  // e.g. after valueMappings, to colour every other text; `index` orders it among the mappings.
  regexMapping(pattern, color, index=0):: { type: 'regex', options: { pattern: pattern, result: { color: color, index: index } } },
  // Table cells filled with the value's colour (from mappings or thresholds).
  colorBackground:: { 'custom.cellOptions': { type: 'color-background', mode: 'basic' } },
  colorText:: { 'custom.cellOptions': { type: 'color-text' } },

  override(matcher, props):: { matcher: matcher, properties: properties(props) },
  byName(name):: { id: 'byName', options: name },
  // The series of one query: its refId (A, B, …, by the query's position).
  byQuery(i):: { id: 'byFrameRefID', options: refId(i) },
  // A dashed line, e.g. a limit drawn with the values it limits.
  dashed:: {
    'custom.lineStyle': { fill: 'dash', dash: [10, 10] },
    'custom.fillOpacity': 0,
  },
  // A link, e.g. on a table column: url may use ${__data.fields.<label>} and variables.
  link(title, url):: { title: title, url: url },
}
