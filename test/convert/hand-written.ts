/** A hand-written libvirt-lxc domain using most of what the LXC driver has (libvirt 9 defines it). */
export const HAND_WRITTEN = `<domain type='lxc' xmlns:lxc='http://libvirt.org/schemas/domain/lxc/1.0'>
  <name>hand</name>
  <uuid>0B1C2D3E4F5046178899AABBCCDDEEFF</uuid>
  <title>Hand written</title>
  <description>by a person &amp; virsh edit</description>
  <metadata><app:info xmlns:app="urn:example:app" version="3">keep me</app:info></metadata>
  <memory unit='MiB'>512</memory>
  <memtune><soft_limit unit='MiB'>256</soft_limit><min_guarantee unit='KiB'>1024</min_guarantee></memtune>
  <vcpu cpuset='0,1'>2</vcpu>
  <numatune><memory mode='interleave' nodeset='0'/></numatune>
  <cputune><shares>2048</shares><quota>-1</quota><period>0</period></cputune>
  <blkiotune><device><path>/dev/block/8:0</path><write_iops_sec>100</write_iops_sec></device></blkiotune>
  <resource><partition>/machine/tenant</partition></resource>
  <os>
    <type arch='x86_64'>exe</type>
    <init>/sbin/init</init>
    <initarg>--log-level=debug</initarg>
    <initenv name='LANG'>C.UTF-8</initenv>
    <initdir>/root</initdir>
    <inituser>+33</inituser>
    <initgroup>+33</initgroup>
    <cmdline>console=ttyS0 quiet</cmdline>
  </os>
  <idmap><uid start='0' target='200000' count='65536'/><gid start='0' target='200000' count='65536'/></idmap>
  <features><privnet/><capabilities policy='default'><sys_time state='on'/><kill state='off'/></capabilities></features>
  <clock offset='localtime'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>restart</on_crash>
  <devices>
    <emulator>/usr/lib/libvirt/libvirt_lxc</emulator>
    <filesystem type='mount' accessmode='passthrough'><source dir='/srv/hand/rootfs'/><target dir='/'/></filesystem>
    <filesystem type='mount'><source dir='/srv/data'/><target dir='/data'/><readonly/></filesystem>
    <filesystem type='ram'><source usage='1' units='MiB'/><target dir='/run'/></filesystem>
    <filesystem type='bind'><source dir='/var/shared/../shared'/><target dir='/shared'/><readonly/></filesystem>
    <filesystem type='file' accessmode='passthrough'><driver type='loop' format='raw'/><source file='/srv/img.raw'/><target dir='/img'/></filesystem>
    <interface type='bridge'><mac address='52:54:00:AA:BB:CC'/><source bridge='br0'/><ip address='10.0.0.5' prefix='24'/><guest dev='eth0'/></interface>
    <console type='pty'/>
    <console type='pty'/>
    <hostdev mode='capabilities' type='net'><source><interface>eth7</interface></source></hostdev>
    <hostdev mode='capabilities' type='misc'><source><char>/dev/fuse</char></source></hostdev>
    <watchdog model='i6300esb' action='reset'/>
  </devices>
  <seclabel type='dynamic' model='selinux' relabel='yes'><baselabel>system_u:system_r:svirt_lxc_net_t:s0</baselabel></seclabel>
  <lxc:namespace><lxc:shareuts type='name' value='other'/></lxc:namespace>
</domain>
`;

/**
 * The same without what reaches the host from the XML-only annotation (a loop-mounted host file,
 * a security label): from-native refuses those, so this is the domain that survives the trip.
 */
export const HAND_WRITTEN_PORTABLE = HAND_WRITTEN.replace(/ *<filesystem type='file'.*\n/, '').replace(/ *<seclabel .*\n/, '');
