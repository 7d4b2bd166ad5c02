// Small helpers for the rules and alerts: label lists and joins written once.
{
  // A PromQL label list from an array, skipping empty names.
  labels(names):: std.join(', ', std.filter(function(n) n != '', names)),

  // "expr, with the `labels` of `info` added where info has a matching series": a join that keeps
  // expr's series when info has none (a plain group_left would drop them).
  //   on:    the labels both sides share;
  //   info:  a selector or expression with one series per `on` group, value 1.
  withInfo(expr, on, info, labels)::
    |||
      (
        %(expr)s
      )
        * on (%(on)s) group_left (%(labels)s)
          %(info)s
      or on (%(on)s)
      (
        %(expr)s
      )
    ||| % { expr: std.rstripChars(expr, '\n'), on: on, info: info, labels: labels },
}
