/**
 * libvirt's cpuset/nodeset syntax (`0-3,^2,8`), parsed to a sorted set and written back in the
 * canonical range form libvirt dumps (`0,1` becomes `0-1`).
 */

/** The sorted members, or undefined when the text is not a valid set. */
export function parseCpuset(text: string): number[] | undefined {
  const members = new Set<number>();
  const excluded = new Set<number>();
  const parts = text.split(',').map((p) => p.trim());
  if (parts.length === 0) return undefined;
  for (const part of parts) {
    const m = /^(\^)?(\d+)(?:-(\d+))?$/.exec(part);
    if (!m) return undefined;
    const lo = Number(m[2]);
    const hi = m[3] === undefined ? lo : Number(m[3]);
    if (hi < lo || hi > 65535) return undefined;
    for (let i = lo; i <= hi; i++) (m[1] ? excluded : members).add(i);
  }
  const out = [...members].filter((n) => !excluded.has(n)).sort((a, b) => a - b);
  return out.length ? out : undefined;
}

export function formatCpuset(members: number[]): string {
  const out: string[] = [];
  let i = 0;
  while (i < members.length) {
    let j = i;
    while (j + 1 < members.length && members[j + 1] === members[j]! + 1) j++;
    out.push(j === i ? String(members[i]) : `${members[i]}-${members[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

/** The canonical form, or the text unchanged when it does not parse (the caller reports it). */
export function canonicalCpuset(text: string): string {
  const set = parseCpuset(text);
  return set ? formatCpuset(set) : text;
}
