/**
 * Tar names are bytes (Go's archive/tar, umoci and containerd keep them so); GNU tar and old
 * packages write Latin-1 and other non-UTF-8 names. The layer applier carries every path as a
 * "binary string" (one char per byte, Latin-1 decoding, lossless) and hands the kernel the very
 * bytes: ASCII as a plain string (the fast common case), anything else as a Buffer.
 */

const ASCII = /^[\x00-\x7f]*$/;

/** A host path (a normal UTF-8 string) as a binary string. */
export function toBinary(path: string): string {
  return ASCII.test(path) ? path : Buffer.from(path, 'utf8').toString('latin1');
}

/** What to give fs calls for a binary string. */
export function fsPath(binary: string): string | Buffer {
  return ASCII.test(binary) ? binary : Buffer.from(binary, 'latin1');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The binary string as a normal string when its bytes are UTF-8 (undefined when they are not). */
export function asUtf8(binary: string): string | undefined {
  if (ASCII.test(binary)) return binary;
  try {
    return utf8.decode(Buffer.from(binary, 'latin1'));
  } catch {
    return undefined;
  }
}

/** For messages: the name as UTF-8 when it is, else as Latin-1 (what non-UTF-8 names nearly always are). */
export function display(binary: string): string {
  return asUtf8(binary) ?? binary;
}
